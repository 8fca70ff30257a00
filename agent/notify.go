package agent

import (
	"context"
	"net"
	"os"
	"strconv"
	"time"
)

// sdNotify sends a state to systemd when the agent runs under a unit with
// Type=notify ($NOTIFY_SOCKET set); otherwise it does nothing. The
// protocol is one datagram on a unix socket, so weft speaks it itself
// rather than linking a library for it.
func sdNotify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' {
		path = "\x00" + path[1:] // abstract socket
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Write([]byte(state))
	return err
}

// watchdog pings systemd's watchdog at half its interval while ctx lives
// and the agent is healthy enough to answer its own API.
func (a *Agent) watchdog(ctx context.Context) {
	usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return
	}
	t := time.NewTicker(time.Duration(usec) * time.Microsecond / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := sdNotify("WATCHDOG=1"); err != nil {
				a.log.Warn("systemd watchdog ping failed", "err", err)
			}
		}
	}
}
