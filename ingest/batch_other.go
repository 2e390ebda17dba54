//go:build !linux

package ingest

import "net"

func newMmsgConn(*net.UDPConn, int) (batchConn, error) { return nil, nil }
