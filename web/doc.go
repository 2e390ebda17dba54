// Package web owns the dashboard: static assets embedded with embed.FS (no
// build step, no CDN) and the handler that serves them at / on the
// monitor's HTTP port. The pages read everything from the REST API and the
// SSE watch stream.
package web
