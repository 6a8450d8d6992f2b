package service

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/exposure-monitor/exposure/internal/lab"
	"github.com/exposure-monitor/exposure/snapshot"
)

// upstream turns a Debian package version (1:2.6.12-1+deb12u4) into its
// upstream part (2.6.12).
func upstream(t *testing.T, pkg string) string {
	v := installed(t, `^(?:\d+:)?(.+)$`, "dpkg-query", "-W", "-f", "${Version}", pkg)
	up, _, _ := strings.Cut(v, "-")
	return strings.TrimSuffix(up, "+dfsg")
}

// TestLabServiceBreadth runs the second daemon group (lab.ServiceDaemons)
// and checks each port's service, product and version against the
// installed packages, over IPv4 and, where the daemon listens there, IPv6.
func TestLabServiceBreadth(t *testing.T) {
	h := startGroup(t, "sv2", lab.ServiceDaemons())

	ngircd := upstream(t, "ngircd")
	varnish := installed(t, `varnish-([\d.]+)`, "varnishd", "-V")
	varnishMinor := varnish[:strings.LastIndex(varnish, ".")]
	want := map[uint16]snapshot.Service{
		3690: {Name: "svnserve", Product: "Subversion"},
		9418: {Name: "git", Product: "git daemon"},
		6667: {Name: "irc", Product: "ngircd", Version: ngircd},
		8080: {Name: "http-proxy", Product: "HAProxy http proxy"},
		22:   {Name: "http-proxy", Product: "HAProxy http proxy"},
		8888: {Name: "http-proxy", Product: "tinyproxy", Version: upstream(t, "tinyproxy")},
		6081: {Name: "http-proxy", Product: "Varnish http accelerator", Version: varnishMinor},
		6082: {Name: "varnish-cli", Product: "Varnish Cache CLI", Version: varnish},
		6697: {Name: "irc", Product: "ngircd", Version: ngircd, Tunnel: "ssl"},
		443:  {Name: "svnserve", Product: "Subversion", Tunnel: "ssl"},
		5901: {Name: "vnc", Product: "VNC"},
		// The ROOT page names no version; the error page does.
		8180: {Name: "http", Product: "Apache Tomcat"},
		8181: {Name: "http", Product: "Apache Tomcat", Version: upstream(t, "tomcat10")},
	}
	v6 := []uint16{9418, 6667, 8080, 6081, 8180, 8181}
	d := labDetector(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	type key = labKey
	var mu sync.Mutex
	got := map[key]*snapshot.Service{}
	var wg sync.WaitGroup
	detect := func(k key) {
		if s := detectOne(ctx, t, d, h, k); s != nil {
			mu.Lock()
			got[k] = s
			mu.Unlock()
		}
	}
	// The IRC ports lead to one ngircd, which gives a nickname to one
	// connection at a time: probing them at once, the probes' NICKs
	// collide and registration (which names the version) fails.
	irc := []key{{6667, false}, {6667, true}, {6697, false}}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i, k := range irc {
			if i > 0 {
				// ngircd frees the nicknames of closed connections
				// lazily.
				time.Sleep(3 * time.Second)
			}
			detect(k)
		}
	}()
	var all []key
	for port := range want {
		all = append(all, key{port, false})
	}
	for _, port := range v6 {
		all = append(all, key{port, true})
	}
	for _, k := range all {
		if slices.Contains(irc, k) {
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); detect(k) }()
	}
	wg.Wait()
	keys := slices.SortedFunc(maps.Keys(got), func(a, b key) int {
		return cmp.Or(cmp.Compare(a.port, b.port), cmp.Compare(fmt.Sprint(a.v6), fmt.Sprint(b.v6)))
	})
	for _, k := range keys {
		g := got[k]
		t.Logf("%5d v6=%-5v %s %q %q %q fp=%q", k.port, k.v6, g.FullName(), g.Product, g.Version, g.Info, g.Fingerprint)
	}
	for _, k := range keys {
		w := want[k.port]
		requireService(t, k, &w, got[k])
	}
}
