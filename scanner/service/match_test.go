package service

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func dbFrom(t testing.TB, file string) *Detector {
	t.Helper()
	db := NewDB()
	require.NoError(t, db.Add("t.probes", strings.NewReader(file)))
	d, err := New(Options{Intensity: DefaultIntensity})
	require.NoError(t, err)
	d.db = db
	return d
}

func TestMatchHostile(t *testing.T) {
	d := dbFrom(t, `Probe TCP NULL q||
match slow m|^(a+)+$| p/catastrophic/
match bin m|^\x00\xff(.)\x80|s p/binary/ v/$I(1,">")/
match ci m|^hello (\w+)|i p/case $1/
match dot m|^A.B$| p/no newline/
match dots m|^A.B$|s p/singleline/
match huge m|^X{16384}$| p/huge/
softmatch later m|^late|
match later m|^later ([\d.]+)| p/Later/ v/$1/
`)
	null := d.db.Probe("TCP", "NULL")
	tests := []struct {
		name        string
		resp        []byte
		product     string
		hard, soft  bool
		wantVersion string
	}{
		{"backtracking bomb times out, no match", []byte(strings.Repeat("a", 40) + "!"), "", false, false, ""},
		{"binary bytes map to runes", []byte("\x00\xff\x07\x80"), "binary", true, false, "7"},
		{"ignore case", []byte("HELLO World"), "case World", true, false, ""},
		{"dot excludes newline", []byte("A\nB"), "singleline", true, false, ""},
		{"dot matches without newline", []byte("A-B"), "no newline", true, false, ""},
		{"huge response", bytes.Repeat([]byte("X"), 16384), "huge", true, false, ""},
		{"invalid utf-8 is bytes", []byte("\xc3\x28\xa0\xa1"), "", false, false, ""},
		{"softmatch", []byte("late"), "", false, true, ""},
		{"hard match after a softmatch line", []byte("later 1.2"), "Later", true, false, "1.2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f Fields
			var hard, soft bool
			withinWatchdog(t, func() { f, hard, soft = d.match(null, tt.resp) })
			require.Equal(t, tt.hard, hard)
			require.Equal(t, tt.soft, soft)
			require.Equal(t, tt.product, f.Product)
			require.Equal(t, tt.wantVersion, f.Version)
		})
	}
}

// watchdog is how long a match may take in these tests: 50 times
// MatchTimeout, room for a loaded CI machine and -race. Without the match
// timeout the hostile patterns backtrack for hours; the watchdog fails the
// test in seconds instead of leaving go test to hang until its -timeout.
const watchdog = 50 * MatchTimeout

// withinWatchdog runs f and fails t if f has not returned within watchdog.
// A runaway f keeps its goroutine until the test binary exits.
func withinWatchdog(t *testing.T, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(watchdog):
		t.Fatalf("match still running after %v: is the regex match timeout (MatchTimeout %v) set?", watchdog, MatchTimeout)
	}
}

func TestMatchTimeoutReported(t *testing.T) {
	m := &Match{Service: "x", Pattern: `^(a|aa)+$`, File: "f", Line: 3}
	var err error
	withinWatchdog(t, func() { _, err = m.exec(bytesToRunes([]byte(strings.Repeat("a", 60)+"b")), MatchTimeout) })
	require.ErrorIs(t, err, errTimeout)
	require.ErrorContains(t, err, "f:3:")
}

func FuzzParse(f *testing.F) {
	f.Add("Probe TCP NULL q||\nmatch ssh m|^SSH-([\\d.]+)| p/OpenSSH/ v/$1/ cpe:/a:o:s:$1/a\n")
	f.Add("Exclude T:1-5\nProbe TCP x q|\\x00\\r| no-payload\nports 1,2-3\nrarity 2\nfallback NULL\n")
	f.Add("Probe UDP y q=a=\nsoftmatch z m%a%si v/$SUBST(1,\"_\",\".\")/ i/$I(1,\">\")/\n")
	f.Fuzz(func(t *testing.T, s string) {
		db := NewDB()
		err := db.Add("fuzz", strings.NewReader(s))
		if err != nil {
			var pe *ParseError
			if !asParseError(err, &pe) {
				return
			}
			require.Equal(t, "fuzz", pe.File)
			require.Positive(t, pe.Line)
		}
	})
}

func FuzzMatch(f *testing.F) {
	d, err := New(Options{Intensity: DefaultIntensity})
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n\r\n<title>x</title>"))
	f.Add([]byte("\x00\x1e\x00\x06\x85\x80\x00\x01\x00\x01"))
	f.Fuzz(func(t *testing.T, resp []byte) {
		if len(resp) > maxResponse {
			resp = resp[:maxResponse]
		}
		for _, p := range d.db.Probes {
			fields, hard, soft := d.match(p, resp)
			if hard || soft {
				require.NotEmpty(t, fields.Service)
			}
		}
	})
}

func BenchmarkMatch(b *testing.B) {
	d, err := New(Options{Intensity: DefaultIntensity})
	require.NoError(b, err)
	cases := map[string]struct {
		probe string
		resp  []byte
	}{
		"ssh-banner":    {"NULL", []byte("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10\r\n")},
		"http-nginx":    {"GetRequest", []byte("HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Wed, 25 Nov 2026 08:00:00 GMT\r\nContent-Type: text/html\r\nContent-Length: 615\r\n\r\n<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>")},
		"unknown-16KiB": {"NULL", bytes.Repeat([]byte("\x00garbage\xff"), 16<<10/9)},
	}
	for name, c := range cases {
		p := d.db.Probe("TCP", c.probe)
		d.match(p, c.resp) // compile outside the timing
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(c.resp)))
			for b.Loop() {
				d.match(p, c.resp)
			}
		})
	}
}

func BenchmarkParseEmbedded(b *testing.B) {
	data, err := embedded.ReadFile(EmbeddedFile)
	require.NoError(b, err)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		require.NoError(b, NewDB().Add(EmbeddedFile, bytes.NewReader(data)))
	}
}

func asParseError(err error, pe **ParseError) bool { return errors.As(err, pe) }
