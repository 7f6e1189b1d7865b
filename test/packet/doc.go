// Package packet builds and parses the frames that BPF tests feed to and read
// back from the datapath. It is the one packet builder for every BPF test
// (BPF_PROG_RUN tables, fuzz seeds, benchmarks, lab traffic checks).
//
// [Build] assembles layers outermost first and fills in everything derivable:
// EtherTypes, IP protocol numbers, lengths and checksums (IPv4 header,
// TCP/UDP/ICMP with their pseudo-headers). Fields left zero that have an
// obvious default say so in their doc. Malformed packets are made by
// building a good one and cutting or editing the bytes.
//
// [Parse] turns a frame back into layers (rebuildable with Build) and [Verify]
// additionally checks every length and checksum, so a test can assert that a
// program's output, NAT rewrites included, is a packet a real stack accepts.
//
// Everything here is plain Go with encoding/binary: no privileges, no cgo,
// safe for concurrent use (no shared state).
package packet
