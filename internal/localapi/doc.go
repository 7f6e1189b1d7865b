// Package localapi is the agent's local API: JSON over HTTP on a unix socket in the state
// directory (sluice.sock), read by sluicectl. Only root (the socket is 0600) can reach it.
//
// The server takes a StatusFunc and serves what it returns; the agent owns the data. The
// client is a thin typed wrapper. Both stop with their context.
package localapi
