package main

import (
	"os"

	"github.com/fb4b1dcc/pulse/bench/internal/child"
	"github.com/fb4b1dcc/pulse/bench/registry"
)

func main() {
	os.Setenv(child.RoleEnv, registry.EtcdServerRole)
	_, code := child.Main(map[string]child.Role{registry.EtcdServerRole: registry.EtcdServerMain})
	os.Exit(code)
}
