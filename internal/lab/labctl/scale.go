package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/exposure-monitor/exposure/internal/lab"
)

// scaleExtraPort is the port SIGUSR1 opens on one address.
const scaleExtraPort = 8080

type scaleOptions struct {
	bits     int
	out      string
	truth    string
	duration time.Duration
}

// ScaleOutput is what labctl scale prints once the lab is up.
type ScaleOutput struct {
	Prefix    netip.Prefix `json:"prefix"`
	Interface string       `json:"interface"`
	Gateway   netip.Addr   `json:"gateway"`
	Ports     []uint16     `json:"ports"`
	Open      uint64       `json:"open"`
	Rule      string       `json:"rule"`
	// SetupSeconds is the time the lab took to come up.
	SetupSeconds float64 `json:"setup_seconds"`
	// Extra is the address and port that SIGUSR1 opens (with
	// lab.ScaleExtraBanner): a port opened between two scans.
	Extra netip.AddrPort `json:"extra"`
}

// runScale brings a scale lab up, reports it and keeps it until ctx ends.
func runScale(ctx context.Context, o scaleOptions, stdout io.Writer, logger *slog.Logger) (err error) {
	start := time.Now()
	setupCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	s, err := lab.OpenScale(setupCtx, lab.ScaleOptions{Bits: o.bits, Logger: logger})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := s.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("tear down scale lab: %w", cerr))
		}
	}()
	if o.truth != "" {
		if err := writeTruth(o.truth, s); err != nil {
			return err
		}
		defer os.Remove(o.truth)
	}
	out := ScaleOutput{
		Prefix: s.Prefix(), Interface: s.Interface(), Gateway: s.Gateway(), Ports: lab.ScalePorts(),
		Open: s.OpenCount(), Rule: "80 open on every address, 22 on the even ones", SetupSeconds: time.Since(start).Seconds(),
		Extra: netip.AddrPortFrom(s.Addr(2), scaleExtraPort),
	}
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	go func() {
		for range usr1 {
			if err := s.OpenExtra(out.Extra.Addr(), out.Extra.Port()); err != nil {
				logger.Error("open the extra port", "err", err)
				continue
			}
			logger.Info("opened the extra port", "addr", out.Extra)
		}
	}()
	remove, err := publish(out, o.out, stdout)
	if err != nil {
		return err
	}
	defer remove()
	waitFor(ctx, o.duration)
	logger.Info("tearing down")
	return nil
}

// writeTruth writes every open (address, port) pair in address order.
func writeTruth(path string, s *lab.ScaleLab) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	var line []byte
	for i := uint64(0); i < s.Size(); i++ {
		a := s.Addr(i)
		for _, p := range lab.ScalePorts() {
			if s.Open(a, p) {
				line = a.AppendTo(line[:0])
				line = append(line, ' ')
				line = strconv.AppendUint(line, uint64(p), 10)
				line = append(line, '\n')
				w.Write(line)
			}
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("write truth: %w", err)
	}
	return f.Close()
}
