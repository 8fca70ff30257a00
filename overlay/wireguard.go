package overlay

import (
	"log/slog"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// WireGuard manages WireGuard interfaces, kernel or embedded.
//
// Beyond the five operations every implementation needs, it says which kind
// it is (for status and logs) and lists the interfaces it can see, so that
// the first Apply after a restart and Cleanup find interfaces a previous run
// left behind.
type WireGuard interface {
	// Create makes the interface if it does not exist; an existing
	// WireGuard interface of that name is left as it is.
	Create(name string, mtu int) error
	// Configure applies cfg through the WireGuard configuration protocol
	// (netlink for the kernel, UAPI for the embedded device).
	Configure(name string, cfg wgtypes.Config) error
	// Device reads an interface; the error wraps os.ErrNotExist when there
	// is no such WireGuard interface.
	Device(name string) (*wgtypes.Device, error)
	// Delete removes the interface; deleting one that does not exist is not
	// an error.
	Delete(name string) error
	// List names the WireGuard interfaces this implementation manages or
	// finds on the host.
	List() ([]string, error)
	// Kind is "kernel", "embedded" or, for fakes, "fake".
	Kind() string
	// Close releases the implementation; embedded devices go with it.
	Close() error
}

// The kinds of WireGuard implementation.
const (
	KindKernel   = "kernel"
	KindEmbedded = "embedded"
)

// NewWireGuard picks the kernel implementation (netlink link type
// "wireguard" configured through wgctrl) when the kernel can create such a
// link, else the embedded wireguard-go device, and logs which.
func NewWireGuard(log *slog.Logger) (WireGuard, error) {
	return newWireGuard(log)
}
