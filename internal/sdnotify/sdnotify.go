// Package sdnotify tells the service manager about distgate's state
// (systemd's Type=notify).
package sdnotify

import (
	"fmt"
	"net"
)

// Send sends state (e.g. "READY=1") to the service manager when it asked
// for notifications through NOTIFY_SOCKET, whose value socket is; with no
// socket it does nothing. With Type=notify, systemd holds a `systemctl
// reload` issued during the start until READY=1, so no SIGHUP reaches the
// process while the Go runtime starts, before any program code can catch
// it. A '@' names a socket in the abstract namespace.
func Send(socket, state string) error {
	if socket == "" {
		return nil
	}
	if socket[0] != '/' && socket[0] != '@' {
		return fmt.Errorf("NOTIFY_SOCKET %q is neither a path nor an abstract socket", socket)
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: socket, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("NOTIFY_SOCKET %q: %w", socket, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("NOTIFY_SOCKET %q: %w", socket, err)
	}
	return nil
}
