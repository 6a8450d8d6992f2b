package alert

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
)

// Secret is a credential read from a file. It formats, marshals and logs as
// "<secret>" so that it cannot leak through a log line or an error by
// accident; Reveal returns the value for the one place that needs it.
type Secret string

const secretMask = "<secret>"

func (Secret) String() string   { return secretMask }
func (Secret) GoString() string { return secretMask }

// LogValue implements slog.LogValuer.
func (Secret) LogValue() slog.Value { return slog.StringValue(secretMask) }

// MarshalText implements encoding.TextMarshaler, which covers JSON and YAML.
func (Secret) MarshalText() ([]byte, error) { return []byte(secretMask), nil }

// Reveal returns the secret value.
func (s Secret) Reveal() string { return string(s) }

// maxSecretSize bounds what is read from a secret file: a password or a key,
// not a log file pointed at by mistake.
const maxSecretSize = 64 << 10

// readSecretFile reads a secret at send time, so that rotating the file needs
// no reload. Surrounding white space (the trailing newline of `echo x > f`)
// is trimmed, as Prometheus does for password_file.
func readSecretFile(path string) (Secret, error) {
	f, err := os.Open(path)
	if err != nil {
		// The path is configuration, not a secret; the error names it.
		return "", fmt.Errorf("read secret file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretSize+1))
	if err != nil {
		return "", fmt.Errorf("read secret file %s: %w", path, err)
	}
	if len(b) > maxSecretSize {
		return "", fmt.Errorf("read secret file %s: larger than %d bytes", path, maxSecretSize)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("read secret file %s: empty", path)
	}
	return Secret(s), nil
}

// redactHostURL keeps scheme and host (without user info) and hides the
// rest: webhook paths and queries routinely hold tokens
// (hooks.example/services/T000/B000/XXXX).
func redactHostURL(u *url.URL) string {
	return u.Scheme + "://" + u.Host + "/<redacted>"
}

// redactUserinfoURL hides the user info and the query of an Alertmanager URL
// but keeps its path, which is useful to debug a wrong prefix.
func redactUserinfoURL(u *url.URL) string {
	c := *u
	c.User = nil
	s := c.Scheme + "://" + c.Host + c.EscapedPath()
	if u.User != nil {
		s = c.Scheme + "://<redacted>@" + c.Host + c.EscapedPath()
	}
	if c.RawQuery != "" {
		s += "?<redacted>"
	}
	return s
}

// redactError replaces the URL inside a *url.Error (which net/http returns
// for every transport failure) with its redacted form.
func redactError(err error, redacted string) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return &url.Error{Op: ue.Op, URL: redacted, Err: ue.Err}
	}
	return err
}

// maxLabelLen bounds label values and annotation lines that may carry
// untrusted bytes (banners, hostnames, target labels).
const maxLabelLen = 256

// scrub removes every occurrence of the secrets from s: a misbehaving
// receiver can echo request headers in its error body.
func scrub(s string, secrets ...Secret) string {
	for _, sec := range secrets {
		if len(sec) >= 4 {
			s = strings.ReplaceAll(s, string(sec), secretMask)
		}
	}
	return s
}
