// Package scanner holds the port-scanning engines and the sweep that turns
// their results into a snapshot.
//
// Two engines implement Engine:
//
//   - SYN sends TCP SYN probes on raw sockets (no cgo, no libpcap). Packets
//     are built and decoded by hand (packet.go; the tests decode them with
//     gopacket/layers, which the binary does not link: its init fills 7 MB
//     of tables). Every probe carries a keyed
//     SipHash cookie of its 4-tuple in the sequence number and a reply counts
//     only when it acknowledges cookie+1 (or, for ICMP, quotes the cookie), so
//     forged and stray packets cannot invent ports. Only a window of
//     outstanding probes is held in memory; unanswered probes are
//     retransmitted individually with an RTT-adaptive timeout, and the send
//     rate comes from a token bucket shared by every scan of the process, so
//     random loss costs retransmissions, never rate.
//
//     One goroutine runs a scan's loop: it reads every reply already queued
//     on the sockets before it declares any timeout (so a busy CPU delays
//     verdicts but never invents filtered ports), builds packets, and hands
//     batches to one sender per CPU, since the kernel does most of a probe's
//     work in the sending thread. IPv4 probes carry their own IPv4 header
//     and go out on IPPROTO_RAW sockets, which receive nothing, so incoming
//     segments are copied to the one receiving socket only; replies are
//     read up to 64 per recvmmsg(2) call. The window is bounded by what the
//     receive buffer can hold. When replies show loss towards hosts that are up,
//     the number of retransmissions grows (up to 8) until a port lost on
//     every try becomes improbable for the whole scan.
//
//   - Connect uses ordinary connect(2) calls with bounded concurrency for
//     processes without CAP_NET_RAW. Its results have the same shape.
//
// Sweep resolves a target specification, runs an engine over the
// pseudo-random order of all (address, port) pairs and builds the
// snapshot.Snapshot. Closed ports are counted in Quality.Closed; filtered
// ports are listed only when the scan has at most SmallScanPairs pairs
// (nmap lists the minority state too) and counted otherwise. Hosts that
// answered nothing are left out of the snapshot, except in such small scans,
// where they are listed as down with their filtered ports.
package scanner
