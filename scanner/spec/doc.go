// Package spec parses target and port specifications and enumerates the (address, port) pairs of a
// scan without ever materialising them.
//
// Port specs ("22,80", "1-1024", "-", "top:1000", "top:100,8080-8090") become a Ports value that
// stores merged, sorted ranges. Target specs (addresses, CIDRs, dash ranges, hostnames, minus
// exclusions in the same syntax) become Targets; Targets.Resolve looks hostnames up on every call and
// returns an AddrSet, again a list of merged ranges over one address space in which IPv4 addresses
// are the IPv4-mapped IPv6 addresses (so both families live in one set, and ::ffff:a.b.c.d is
// a.b.c.d).
//
// NewOrder walks every (address, port) pair exactly once. By default the order is a keyed
// pseudo-random permutation of the pair indexes (a Feistel network over the next power of four,
// with cycle walking), so a scan of a /16 times 65,535 ports needs the same few hundred bytes as a
// scan of a /30. Consecutive pairs rarely share an address, which spreads the load over hosts as
// nmap's randomised order does. OrderOptions.Sequential gives address-major ascending order.
//
// Every parse error is an *Error carrying the offending value and a short reason, so that callers
// such as config can print "file:line: field: \"value\": reason".
package spec
