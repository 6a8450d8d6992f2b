package scanner

import (
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestAppendEthernet(t *testing.T) {
	dst, src := net.HardwareAddr{1, 2, 3, 4, 5, 6}, net.HardwareAddr{0x02, 9, 9, 9, 9, 9}
	require.Equal(t, []byte{0xaa, 1, 2, 3, 4, 5, 6, 0x02, 9, 9, 9, 9, 9, 0x08, 0x00}, appendEthernet([]byte{0xaa}, dst, src))
}
