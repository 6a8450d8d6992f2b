// Package service is exposure's service and version detection (nmap's -sV).
//
// Probe database. Probes and match lines use the nmap-service-probes
// format (Exclude, Probe, match/softmatch with version templates p/ v/ i/ h/
// o/ d/ cpe:, ports, sslports, rarity, totalwaitms, tcpwrappedms, fallback).
// The built-in database, probes/exposure-service-probes, is written for
// exposure from the protocols and embedded; it does not contain nmap's file.
// Operators add files with Options.ProbeFiles (a full nmap file parses); a
// probe of the same protocol and name as an earlier one is merged into it,
// its match lines tried after the earlier ones. Parse errors name file and
// line.
//
// Matching. Patterns run under github.com/dlclark/regexp2 (nmap's patterns
// are PCRE, with lookaround and backreferences), flags s and i mapped to
// Singleline and IgnoreCase, every response byte mapped to the rune of the
// same value, every run bounded by MatchTimeout. Patterns compile on first
// use; one that does not compile is logged once, counted (BadPatterns) and
// skipped.
//
// Algorithm, per port and phase:
//   - every probe uses its own connection, as in nmap; up to 8 run at once;
//   - the NULL probe (banner wait) starts together with the probes
//     registered for the port and then the rest up to the intensity, rarest
//     last, so a silent service does not cost the banner wait;
//   - each reply is matched as it arrives (at most 16 KiB per connection);
//     a hard match ends the phase, except that a versionless one waits a
//     moment for a probe that may still give the version, and an HTTP one
//     for the TLS handshake (HTTPS servers answer plain HTTP with a 400);
//     of several, the one that says most (a version, else a product) is
//     kept, and of softmatches also (then an info), the earliest on a tie;
//   - a softmatch narrows the probes to those that can name that service:
//     the others are not sent and those running are stopped; with no hard
//     match it is the verdict;
//   - a TLS handshake (crypto/tls) runs alongside (300 ms late on a port a
//     plain-text probe is registered for and none lists as TLS: a server
//     that stalls on a ClientHello answers its own probe first); when it
//     succeeds the whole detection is repeated inside TLS, reported as
//     tunnel "ssl" with the leaf certificate's facts;
//   - tcpwrapped, as in nmap: the NULL probe's connection was accepted and
//     then closed by the peer, with no data, within tcpwrappedms;
//   - Options.Timeout bounds each phase of a port, the caller's context the
//     whole scan, Options.Concurrency the ports Annotate examines at once.
//
// Only TCP probes run: UDP probes in a file are parsed and kept, and the
// detector reports TCP services. Ports the probe files Exclude (the embedded
// file excludes the raw printer ports 9100-9107, as nmap does) return
// ErrExcluded; a port no probe could connect to returns the dial error.
//
// Text from the network (product, version, info, certificate names) is made
// valid UTF-8, stripped of control characters and bounded in length.
package service
