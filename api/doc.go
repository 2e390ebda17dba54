// Package api owns pulse's read and control API over the monitor: REST
// (JSON over net/http's pattern routing), the Server-Sent Events watch
// stream (resumable with Last-Event-ID), bearer-token authentication, and
// the pulse.v1.Monitor gRPC service's List and Watch. Every error is JSON
// {error, detail} with the right status code. See docs/api.md.
package api
