package lab

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseTCPInSegs(t *testing.T) {
	snmp := "Ip: Forwarding DefaultTTL\nIp: 1 64\n" +
		"Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs\n" +
		"Tcp: 1 200 120000 -1 3 4 0 0 1 4242 17\n"
	n, err := parseTCPInSegs(snmp)
	require.NoError(t, err)
	require.Equal(t, uint64(4242), n)

	_, err = parseTCPInSegs("Ip: Forwarding\nIp: 1\n")
	require.ErrorContains(t, err, "no Tcp InSegs")
	_, err = parseTCPInSegs("Tcp: RtoAlgorithm OutSegs\nTcp: 1 2\n")
	require.ErrorContains(t, err, "no Tcp InSegs")
}
