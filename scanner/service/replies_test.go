package service

import (
	"bufio"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// replyCase is one line of testdata/replies.txt: a probe, what the reply
// must give, and the reply (a Go string literal). want is
//
//	service|product|version  a hard match with exactly these fields
//	~service|product         only a softmatch, with these fields
//	!product                 no match may name this product (a generic
//	                         reply beside a product's fingerprint)
//	-                        no match at all
type replyCase struct {
	line         int
	probe, want  string
	reply        []byte
	neg, none    bool
	soft         bool
	service      string
	product, ver string
}

func readReplies(t *testing.T) []replyCase {
	t.Helper()
	f, err := os.Open("testdata/replies.txt")
	require.NoError(t, err)
	defer f.Close()
	var cases []replyCase
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		text := sc.Text()
		if text == "" || text[0] == '#' {
			continue
		}
		parts := strings.SplitN(text, "\t", 3)
		require.Len(t, parts, 3, "testdata/replies.txt:%d: want PROBE<TAB>WANT<TAB>REPLY", n)
		reply, err := strconv.Unquote(parts[2])
		require.NoError(t, err, "testdata/replies.txt:%d: reply", n)
		c := replyCase{line: n, probe: parts[0], want: parts[1], reply: []byte(reply)}
		w := c.want
		switch {
		case w == "-":
			c.none = true
		case strings.HasPrefix(w, "!"):
			c.neg, c.product = true, w[1:]
		default:
			if strings.HasPrefix(w, "~") {
				c.soft, w = true, w[1:]
			}
			f := strings.Split(w, "|")
			c.service = f[0]
			if len(f) > 1 {
				c.product = f[1]
			}
			if len(f) > 2 {
				c.ver = f[2]
			}
		}
		cases = append(cases, c)
	}
	require.NoError(t, sc.Err())
	return cases
}

// TestReplies runs every reply of testdata/replies.txt through the embedded
// database behind the echo guard, as a probe connection does.
func TestReplies(t *testing.T) {
	d, err := New(Options{Intensity: DefaultIntensity})
	require.NoError(t, err)
	for _, c := range readReplies(t) {
		t.Run(strconv.Itoa(c.line)+"/"+c.probe+"/"+c.want, func(t *testing.T) {
			p := d.DB().Probe("TCP", c.probe)
			if p == nil {
				p = d.DB().Probe("UDP", c.probe)
			}
			require.NotNil(t, p, "line %d: no probe %s", c.line, c.probe)
			f, hard, soft := d.matchReply(p, c.reply)
			switch {
			case c.none:
				require.False(t, hard || soft, "line %d: matched %+v", c.line, f)
			case c.neg:
				if hard || soft {
					require.NotEqual(t, c.product, f.Product, "line %d: a generic reply named the product", c.line)
				}
			case c.soft:
				require.False(t, hard, "line %d: hard match %+v", c.line, f)
				require.True(t, soft, "line %d: no softmatch", c.line)
				require.Equal(t, c.service, f.Service, "line %d", c.line)
				require.Equal(t, c.product, f.Product, "line %d", c.line)
			default:
				require.True(t, hard, "line %d: no hard match (soft %v %+v)", c.line, soft, f)
				require.Equal(t, c.service, f.Service, "line %d", c.line)
				require.Equal(t, c.product, f.Product, "line %d", c.line)
				require.Equal(t, c.ver, f.Version, "line %d", c.line)
			}
		})
	}
}

// TestEveryMatchLineTested walks every match line of the embedded file: it
// must compile, its service must be named by a reply in
// testdata/replies.txt, and every HTTP product fingerprint must have both a
// reply that names it and a generic reply beside it that must not.
func TestEveryMatchLineTested(t *testing.T) {
	d, err := New(Options{Intensity: DefaultIntensity})
	require.NoError(t, err)
	named := map[string]bool{}
	products := map[string]bool{}
	negated := map[string]bool{}
	for _, c := range readReplies(t) {
		switch {
		case c.neg:
			negated[c.product] = true
		case !c.none:
			named[c.service] = true
			products[c.product] = true
		}
	}
	for _, p := range d.DB().Probes {
		for _, m := range p.Matches {
			_, err := m.compile(MatchTimeout)
			require.NoError(t, err)
			require.True(t, named[m.Service], "%s:%d: no reply in testdata/replies.txt names service %q", m.File, m.Line, m.Service)
			isHTTP := slices.Contains([]string{"http", "http-proxy", "ipp", "docker", "wsman"}, m.Service)
			if !isHTTP || m.Product == "" || strings.Contains(m.Product, "$") {
				continue
			}
			require.True(t, products[m.Product], "%s:%d: no reply names product %q", m.File, m.Line, m.Product)
			require.True(t, negated[m.Product], "%s:%d: no generic reply (!%s) checks that product %q is not named by mistake", m.File, m.Line, m.Product, m.Product)
		}
	}
}
