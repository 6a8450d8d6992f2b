//go:build tools

// Package tools pins the project's dependencies in go.mod while the packages
// that use them are being written.
package tools

import (
	_ "github.com/alecthomas/kingpin/v2"
	_ "github.com/coreos/go-systemd/v22/daemon"
	_ "github.com/dchest/siphash"
	_ "github.com/dlclark/regexp2"
	_ "github.com/google/gopacket/layers"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/prometheus/client_golang/prometheus/testutil"
	_ "github.com/prometheus/common/model"
	_ "github.com/prometheus/common/config"
	_ "github.com/prometheus/exporter-toolkit/web"
	_ "github.com/prometheus/exporter-toolkit/web/kingpinflag"
	_ "github.com/robfig/cron/v3"
	_ "github.com/stretchr/testify/require"
	_ "go.etcd.io/bbolt"
	_ "golang.org/x/net/bpf"
	_ "golang.org/x/net/ipv4"
	_ "golang.org/x/net/ipv6"
	_ "golang.org/x/sys/unix"
	_ "golang.org/x/time/rate"
	_ "gopkg.in/yaml.v3"
)
