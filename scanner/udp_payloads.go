package scanner

import (
	"sync"

	"github.com/exposure-monitor/exposure/scanner/service"
)

// udpPayloads are the probes the UDP engine sends to a port whose usual
// protocol needs a well-formed request before it says anything. Their one
// home is the embedded UDP probe file of -sV (service.UDPPayloads): each
// port gets the payload of its most common probe there, every other port
// an empty datagram.
var udpPayloads = sync.OnceValue(func() map[uint16][]byte {
	m, err := service.UDPPayloads()
	if err != nil {
		// The file is embedded and parsed by the service tests: failing
		// here is a build defect, not an input error.
		panic("udp payloads: " + err.Error())
	}
	return m
})

// udpPayload is the datagram the UDP engine sends to port.
func udpPayload(port uint16) []byte { return udpPayloads()[port] }
