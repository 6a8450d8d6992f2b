package store

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRunsEncoding(t *testing.T) {
	for _, rs := range [][]run{
		nil,
		{{First: 1, State: "open"}},
		{{First: 1, Last: 5, End: 6, State: "open", Hist: []value{{At: 1, V: json.RawMessage(`{"name":"ssh"}`)}, {At: 3}}},
			{First: 9, State: "filtered"}},
		{{First: -5, State: ""}},
	} {
		got, err := decodeRuns(encodeRuns(rs))
		require.NoError(t, err)
		if len(rs) == 0 {
			require.Empty(t, got)
			continue
		}
		require.Equal(t, rs, got)
	}
	for _, bad := range [][]byte{nil, {2}, {valueV1, 5}, {valueV1, 1, 2, 2, 2, 100}, append(encodeRuns([]run{{First: 1}}), 0)} {
		_, err := decodeRuns(bad)
		require.Error(t, err, "%v", bad)
	}
}

func FuzzDecodeRuns(f *testing.F) {
	f.Add(encodeRuns([]run{{First: 1, Last: 5, End: 6, State: "open", Hist: []value{{At: 1, V: json.RawMessage(`"x"`)}}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := decodeRuns(b)
		if err == nil {
			if _, err := decodeRuns(encodeRuns(rs)); err != nil {
				t.Fatalf("re-encoding failed: %v", err)
			}
		}
	})
}
