package main

import (
	"github.com/fb4b1dcc/pulse/bench/detection"
	"github.com/fb4b1dcc/pulse/bench/healthep"
	"github.com/fb4b1dcc/pulse/bench/internal/child"
	"github.com/fb4b1dcc/pulse/bench/probing"
	"github.com/fb4b1dcc/pulse/bench/registry"
	"github.com/fb4b1dcc/pulse/bench/udpingest"
)

// childMain runs this process as a child part when asked to.
func childMain() (bool, int) {
	return child.Main(map[string]child.Role{
		detection.RoleName:       detection.Role,
		udpingest.RecvRole:       udpingest.RecvMain,
		udpingest.BlastRole:      udpingest.BlastMain,
		healthep.ServerRole:      healthep.ServerMain,
		healthep.LoadRole:        healthep.LoadMain,
		registry.EtcdServerRole:  registry.EtcdServerMain,
		registry.EtcdLoadRole:    registry.EtcdLoadMain,
		registry.PulseServerRole: registry.PulseServerMain,
		registry.PulseLoadRole:   registry.PulseLoadMain,
		probing.FleetRole:        probing.FleetMain,
		probing.ProberRole:       probing.ProberMain,
	})
}
