package monitor

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/prometheus/exporter-toolkit/web"
	"gopkg.in/yaml.v3"
)

// The API file sits beside the database and holds the URL of the running
// daemon's web interface, so that history, diff and show find the API of
// the daemon that holds the database with --storage.path alone. The daemon
// writes it once it holds the database's lock and its listeners are bound,
// and removes it on the way out; a file left by a daemon that crashed is
// overwritten by the next one and is read only while a daemon holds the
// lock.

// APIFileSuffix is appended to the database path to name the API file.
const APIFileSuffix = ".api"

// maxAPIFile bounds what ReadAPIURL reads.
const maxAPIFile = 4 << 10

// APIFile is the API file of the database at storagePath.
func APIFile(storagePath string) string { return storagePath + APIFileSuffix }

// ReadAPIURL returns the URL recorded beside the database at storagePath.
// A missing file yields an error wrapping fs.ErrNotExist.
func ReadAPIURL(storagePath string) (string, error) {
	path := APIFile(storagePath)
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxAPIFile+1))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxAPIFile {
		return "", fmt.Errorf("%s: longer than %d bytes", path, maxAPIFile)
	}
	s := strings.TrimSpace(string(b))
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.ContainsAny(s, "\n\r\t ") {
		return "", fmt.Errorf("%s: not an http(s) URL: %q", path, strings.ToValidUTF8(s[:min(len(s), 100)], "?"))
	}
	return s, nil
}

// writeAPIURL records u beside the database, atomically: a reader sees the
// old file or the new one, never a part.
func writeAPIURL(storagePath, u string) error {
	path := APIFile(storagePath)
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write API file: %w", err)
	}
	_, werr := tmp.WriteString(u + "\n")
	if werr == nil {
		// The URL is no secret, and the CLI may run as another user.
		werr = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), path)
	}
	if werr != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("write API file %s: %w", path, werr)
	}
	return nil
}

// apiURL is the URL a client on this host reaches the daemon at: the first
// TCP listener, with a wildcard address replaced by loopback. Empty when no
// listener is TCP.
func apiURL(ls []net.Listener, scheme string) string {
	for _, l := range ls {
		a, ok := l.Addr().(*net.TCPAddr)
		if !ok {
			continue
		}
		ip := a.IP
		switch {
		case ip == nil || ip.Equal(net.IPv4zero):
			ip = net.IPv4(127, 0, 0, 1)
		case ip.Equal(net.IPv6unspecified):
			ip = net.IPv6loopback
		}
		return scheme + "://" + net.JoinHostPort(ip.String(), fmt.Sprint(a.Port))
	}
	return ""
}

// webScheme is https when the web config file turns TLS on (it may hold
// only basic auth users), else http.
func webScheme(webConfigFile string) (string, error) {
	if webConfigFile == "" {
		return "http", nil
	}
	b, err := os.ReadFile(webConfigFile)
	if err != nil {
		return "", fmt.Errorf("web config %s: %w", webConfigFile, err)
	}
	var c struct {
		TLS web.TLSConfig `yaml:"tls_server_config"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		return "", fmt.Errorf("web config %s: %w", webConfigFile, err)
	}
	if c.TLS.IsEnabled() {
		return "https", nil
	}
	return "http", nil
}

// newStorage is what the daemon created for a database that did not exist:
// the file and the directories above it. A daemon that fails to start
// removes them again rather than leave an empty database behind.
type newStorage struct {
	file string
	dirs []string // deepest first
}

// createStorageDir creates the directory of the database at path and
// notes what startup creates.
func createStorageDir(path string) (*newStorage, error) {
	ns := &newStorage{}
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		ns.file = path
	}
	for dir := filepath.Dir(path); ; dir = filepath.Dir(dir) {
		if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
			break
		}
		ns.dirs = append(ns.dirs, dir)
		if parent := filepath.Dir(dir); parent == dir {
			break
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create storage directory: %w", err)
	}
	return ns, nil
}

// remove deletes what startup created; a directory that is no longer empty
// stays.
func (ns *newStorage) remove() {
	if ns.file != "" {
		_ = os.Remove(ns.file)
	}
	for _, d := range ns.dirs {
		_ = os.Remove(d)
	}
}
