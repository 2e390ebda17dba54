package main

import (
	"os"
)

func main() {
	if isChild, code := childMain(); isChild {
		os.Exit(code)
	}
	os.Exit(run(os.Args[1:]))
}
