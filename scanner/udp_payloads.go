package scanner

// udpPayloads are the probes the UDP engine sends to a port whose usual
// protocol needs a well-formed request before it says anything: our own
// minimal requests, written from the protocols' RFCs. Every other port
// gets an empty datagram.
var udpPayloads = map[uint16][]byte{
	// DNS: a query for version.bind, class CH, type TXT (RFC 1035; BIND's convention).
	53: dnsVersionBind,
	// NTP: a mode 3 (client) version 4 request, 48 bytes (RFC 5905).
	123: append([]byte{0x23}, make([]byte, 47)...),
	// NetBIOS name service: a node status request for "*" (RFC 1002 4.2.17).
	137: {0x80, 0xf0, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x20, 'C', 'K', 'A', 'A', 'A', 'A', 'A', 'A', 'A', 'A', 'A', 'A', 'A', 'A', 'A', 'A',
		'A', 'A', 'A', 'A', 'A', 'A', 'A', 'A', 'A', 'A', 'A', 'A', 'A', 'A', 'A', 'A', 0x00,
		0x00, 0x21, 0x00, 0x01},
	// SNMP v1 GetRequest for sysDescr.0 with community "public" (RFC 1157).
	161: snmpGetSysDescr,
	// TFTP: a read request (RFC 1350); any answer, an error included, is open.
	69: []byte("\x00\x01exposure-probe\x00octet\x00"),
	// memcached UDP frame header (request 1, sequence 0, 1 datagram) and "stats".
	11211: []byte("\x00\x01\x00\x00\x00\x01\x00\x00stats\r\n"),
	// mDNS: a query for _services._dns-sd._udp.local PTR.
	5353: []byte("\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x09_services\x07_dns-sd\x04_udp\x05local\x00\x00\x0c\x00\x01"),
	// SSDP M-SEARCH.
	1900: []byte("M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: ssdp:all\r\n\r\n"),
	// OpenVPN: a P_CONTROL_HARD_RESET_CLIENT_V2 with a session id and no ack.
	1194: {0x38, 0x65, 0x78, 0x70, 0x6f, 0x73, 0x75, 0x72, 0x65, 0x00, 0x00, 0x00, 0x00, 0x00},
}

var dnsVersionBind = []byte("\x45\x78\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07version\x04bind\x00\x00\x10\x00\x03")

var snmpGetSysDescr = []byte{
	0x30, 0x29, 0x02, 0x01, 0x00, 0x04, 0x06, 'p', 'u', 'b', 'l', 'i', 'c',
	0xa0, 0x1c, 0x02, 0x04, 0x45, 0x78, 0x70, 0x6f, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00,
	0x30, 0x0e, 0x30, 0x0c, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x02, 0x01, 0x01, 0x01, 0x00, 0x05, 0x00,
}

// udpPayload is the datagram the UDP engine sends to port.
func udpPayload(port uint16) []byte { return udpPayloads[port] }
