package diff

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCompare(t *testing.T) {
	const h = "198.18.0.2"
	for _, tc := range []struct {
		name   string
		policy Policy
		a, b   step
		want   []string
	}{
		{name: "identical", a: step{Hosts: map[string][]string{h: {"22", "80"}}}, b: step{Hosts: map[string][]string{h: {"22", "80"}}}},
		{name: "opened", a: step{Hosts: map[string][]string{h: {"22"}}}, b: step{Hosts: map[string][]string{h: {"22", "80/http/nginx"}}},
			want: []string{"port_opened 198.18.0.2 80/tcp after=open(http/nginx/)"}},
		{name: "closed", a: step{Hosts: map[string][]string{h: {"22", "80/http/nginx/1.22"}}}, b: step{Hosts: map[string][]string{h: {"22"}}},
			want: []string{"port_closed 198.18.0.2 80/tcp before=open(http/nginx/1.22)"}},
		{name: "incomplete b claims no closure", a: step{Hosts: map[string][]string{h: {"22", "80"}}},
			b: step{Incomplete: true, Hosts: map[string][]string{h: {"22"}}}},
		{name: "incomplete a is still the view", a: step{Incomplete: true, Hosts: map[string][]string{h: {"22"}}},
			b:    step{Hosts: map[string][]string{h: {"22", "443"}}},
			want: []string{"port_opened 198.18.0.2 443/tcp after=open"}},
		{name: "version", a: step{Hosts: map[string][]string{h: {"22/ssh/OpenSSH/9.2p1"}}}, b: step{Hosts: map[string][]string{h: {"22/ssh/OpenSSH/9.6p1"}}},
			want: []string{"version_changed 198.18.0.2 22/tcp before=open(ssh/OpenSSH/9.2p1) after=open(ssh/OpenSSH/9.6p1)"}},
		{name: "inconclusive b is no change", a: step{Hosts: map[string][]string{h: {"22/ssh/OpenSSH/9.2p1"}}}, b: step{Hosts: map[string][]string{h: {"22/ssh/OpenSSH"}}}},
		{name: "host down", a: step{Hosts: map[string][]string{h: {"22"}}}, b: step{Down: []string{h}},
			want: []string{"host_down 198.18.0.2"}},
		{name: "new verdict", policy: Policy{NeverOpen: tcp(23)},
			a: step{Hosts: map[string][]string{h: {"22"}}}, b: step{Hosts: map[string][]string{h: {"22", "23"}}},
			want: []string{"port_opened 198.18.0.2 23/tcp after=open", `forbidden_open 198.18.0.2 23/tcp after=open "port 23/tcp is in expect.never_open"`}},
		{name: "verdict holding in a is not new", policy: Policy{NeverOpen: tcp(23)},
			a: step{Hosts: map[string][]string{h: {"23"}}}, b: step{Hosts: map[string][]string{h: {"23"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := buildSnapshot(t, 1, tc.a), buildSnapshot(t, 2, tc.b)
			ja, _ := json.Marshal(a)
			jb, _ := json.Marshal(b)
			var got []string
			for _, c := range Compare(a, b, tc.policy) {
				require.Equal(t, b.ID, c.Snapshot)
				require.Equal(t, a.ID, c.Previous)
				got = append(got, formatChange(c))
			}
			require.Equal(t, tc.want, got)
			ja2, _ := json.Marshal(a)
			jb2, _ := json.Marshal(b)
			require.JSONEq(t, string(ja), string(ja2), "Compare modified a")
			require.JSONEq(t, string(jb), string(jb2), "Compare modified b")
		})
	}
}
