package bpf

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// decode reads a struct event as the programs write it (little-endian).
func (e *datapathEvent) decode(b []byte) (int, error) {
	if len(b) < binary.Size(e) {
		return 0, fmt.Errorf("bpf: event of %d bytes, want %d", len(b), binary.Size(e))
	}
	if err := binary.Read(bytes.NewReader(b), binary.LittleEndian, e); err != nil {
		return 0, fmt.Errorf("bpf: decode event: %w", err)
	}
	return binary.Size(e), nil
}
