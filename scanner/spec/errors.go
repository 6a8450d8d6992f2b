package spec

import "fmt"

// Error is a parse error. Value is the offending element (one list element, not the whole spec,
// when the spec is a list) and Reason says what is wrong with it.
type Error struct {
	Value  string
	Reason string
}

func (e *Error) Error() string { return fmt.Sprintf("%q: %s", e.Value, e.Reason) }

func errorf(value, reason string) *Error { return &Error{Value: value, Reason: reason} }

// Reasons shared by the parsers. They end up in front of users, so they stay short and uniform.
const (
	reasonEmptyPorts   = "empty port spec"
	reasonEmptyElement = "empty list element"
	reasonNotPort      = "not a port number"
	reasonPortRange    = "port out of range 1-65535"
	reasonEndBefore    = "range end before start"
	reasonTop          = "top:N needs N in 1-1000"

	reasonEmptyTarget  = "empty target"
	reasonBadAddr      = "invalid IP address"
	reasonBadPrefix    = "invalid CIDR prefix"
	reasonBadRange     = "invalid address range"
	reasonMixedFamily  = "range mixes IPv4 and IPv6"
	reasonZone         = "zoned addresses are not supported"
	reasonBadHostname  = "invalid hostname"
	reasonEmptyTargets = "no targets"
)
