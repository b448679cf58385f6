package sandbox

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ConfigureIncusNIC gives an instance's interface a static IPv4 address and
// a default route, from inside the instance's network namespace (as its
// root). Incus hot-plugs a container's NIC after start and leaves the
// address to the guest's DHCP client, which airlock's images (a debootstrap
// minbase) do not have; this is what such a client would have done, with
// the address the host picked.
func ConfigureIncusNIC(ifname string, addr netip.Prefix, gw netip.Addr) error {
	if !addr.Addr().Is4() || !gw.Is4() {
		return fmt.Errorf("configure %s: want IPv4 addresses, got %s via %s", ifname, addr, gw)
	}
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		return fmt.Errorf("configure %s: %w", ifname, err)
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("configure %s: netlink: %w", ifname, err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("configure %s: netlink: %w", ifname, err)
	}
	nl := &netlinkConn{fd: fd}

	// The link up.
	link := unix.IfInfomsg{Family: unix.AF_UNSPEC, Index: int32(ifc.Index), Flags: unix.IFF_UP, Change: unix.IFF_UP}
	if err := nl.request(unix.RTM_NEWLINK, 0, structBytes(&link)); err != nil {
		return fmt.Errorf("configure %s: set link up: %w", ifname, err)
	}
	// The address, with its prefix and broadcast.
	a4 := addr.Addr().As4()
	bcast := broadcast(addr)
	am := unix.IfAddrmsg{Family: unix.AF_INET, Prefixlen: uint8(addr.Bits()), Scope: unix.RT_SCOPE_UNIVERSE, Index: uint32(ifc.Index)}
	body := structBytes(&am)
	body = appendAttr(body, unix.IFA_LOCAL, a4[:])
	body = appendAttr(body, unix.IFA_ADDRESS, a4[:])
	body = appendAttr(body, unix.IFA_BROADCAST, bcast[:])
	if err := nl.request(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, body); err != nil {
		return fmt.Errorf("configure %s: address %s: %w", ifname, addr, err)
	}
	// The default route through the gateway.
	g4 := gw.As4()
	rt := unix.RtMsg{Family: unix.AF_INET, Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_BOOT, Scope: unix.RT_SCOPE_UNIVERSE, Type: unix.RTN_UNICAST}
	body = structBytes(&rt)
	body = appendAttr(body, unix.RTA_GATEWAY, g4[:])
	oif := make([]byte, 4)
	binary.NativeEndian.PutUint32(oif, uint32(ifc.Index))
	body = appendAttr(body, unix.RTA_OIF, oif)
	if err := nl.request(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, body); err != nil {
		return fmt.Errorf("configure %s: default route via %s: %w", ifname, gw, err)
	}
	return nil
}

func broadcast(p netip.Prefix) [4]byte {
	a := p.Masked().Addr().As4()
	v := binary.BigEndian.Uint32(a[:]) | (1<<(32-p.Bits()) - 1)
	var out [4]byte
	binary.BigEndian.PutUint32(out[:], v)
	return out
}

type netlinkConn struct {
	fd  int
	seq uint32
}

// request sends one message and waits for the kernel's acknowledgement.
func (c *netlinkConn) request(typ uint16, flags uint16, body []byte) error {
	c.seq++
	hdr := unix.NlMsghdr{
		Len:   uint32(unix.SizeofNlMsghdr + len(body)),
		Type:  typ,
		Flags: unix.NLM_F_REQUEST | unix.NLM_F_ACK | flags,
		Seq:   c.seq,
	}
	msg := append(structBytes(&hdr), body...)
	if err := unix.Sendto(c.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 8192)
	for {
		n, _, err := unix.Recvfrom(c.fd, buf, 0)
		if err != nil {
			return err
		}
		msgs, err := parseNetlink(buf[:n])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Header.Seq != c.seq || m.Header.Type != unix.NLMSG_ERROR {
				continue
			}
			if len(m.Data) < 4 {
				return fmt.Errorf("short netlink answer")
			}
			if code := int32(binary.NativeEndian.Uint32(m.Data[:4])); code != 0 {
				return unix.Errno(-code)
			}
			return nil
		}
	}
}

func parseNetlink(b []byte) ([]struct {
	Header unix.NlMsghdr
	Data   []byte
}, error) {
	var out []struct {
		Header unix.NlMsghdr
		Data   []byte
	}
	for len(b) >= unix.SizeofNlMsghdr {
		h := *(*unix.NlMsghdr)(unsafe.Pointer(&b[0]))
		if int(h.Len) < unix.SizeofNlMsghdr || int(h.Len) > len(b) {
			return nil, fmt.Errorf("malformed netlink message")
		}
		out = append(out, struct {
			Header unix.NlMsghdr
			Data   []byte
		}{h, b[unix.SizeofNlMsghdr:h.Len]})
		next := nlAlign(int(h.Len))
		if next >= len(b) {
			break
		}
		b = b[next:]
	}
	return out, nil
}

func nlAlign(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }

func appendAttr(b []byte, typ uint16, data []byte) []byte {
	attr := unix.RtAttr{Len: uint16(unix.SizeofRtAttr + len(data)), Type: typ}
	b = append(b, structBytes(&attr)...)
	b = append(b, data...)
	for len(b)%unix.RTA_ALIGNTO != 0 {
		b = append(b, 0)
	}
	return b
}

// structBytes is the memory of a netlink header struct, as the kernel
// reads it (native byte order, no pointers inside).
func structBytes[T any](v *T) []byte {
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(v)), unsafe.Sizeof(*v))...)
}

// incusNetCommand is `airlock __incus-init net IFNAME ADDRESS/BITS GATEWAY`:
// ConfigureIncusNIC, run through Incus' exec as an instance's root.
func incusNetCommand(args []string, stderr io.Writer) int {
	if len(args) != 3 {
		fmt.Fprintln(stderr, "airlock init: net IFNAME ADDRESS/BITS GATEWAY")
		return 2
	}
	addr, err := netip.ParsePrefix(args[1])
	if err == nil {
		var gw netip.Addr
		if gw, err = netip.ParseAddr(args[2]); err == nil {
			err = ConfigureIncusNIC(args[0], addr, gw)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "airlock init: net: %v\n", err)
		return 1
	}
	return 0
}
