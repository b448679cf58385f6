package egress

import (
	"bufio"
	"bytes"
	"errors"
)

// SSHPort is the port whose tunnels carry SSH, not TLS. A tunnel to a host
// name on it must start with an SSH identification string instead of a
// TLS ClientHello: SSH has no SNI, and the proxy dials the name it checked
// anyway, so what the check adds is that the port carries the protocol
// the allow rule was written for, not any other.
const SSHPort = 22

// tunnelProto is what a tunnel to host:port must begin with: "tls" (a
// ClientHello whose SNI names host), "ssh" (an SSH identification string)
// or "" (anything: IP literals the operator listed, and open mode).
func (s *Server) tunnelProto(host string, port int) string {
	if !s.needsSNI(host) {
		return ""
	}
	if port == s.sshPort {
		return "ssh"
	}
	return "tls"
}

// maxSSHIdent is the longest identification line RFC 4253 allows (255
// bytes, CR LF included).
const maxSSHIdent = 255

// peekSSHIdent checks that the client's first line is an SSH 2.0
// identification string ("SSH-2.0-softwareversion ..." ending in LF),
// without consuming it, and returns its software version for the log. An
// SSH client sends it first, before the server's (RFC 4253, 4.2).
func peekSSHIdent(br *bufio.Reader) (string, error) {
	notSSH := errors.New("not SSH: tunnels to port 22 must start with an SSH-2.0 identification string")
	b, err := br.Peek(4)
	if err != nil {
		return "", err
	}
	if string(b) != "SSH-" {
		return "", notSSH
	}
	for n := 5; ; n++ {
		if b, err = br.Peek(n); err != nil {
			return "", err
		}
		if b[n-1] == '\n' {
			break
		}
		if n >= maxSSHIdent {
			return "", errors.New("not SSH: identification string longer than 255 bytes")
		}
	}
	line := bytes.TrimRight(b, "\r\n")
	if !bytes.HasPrefix(line, []byte("SSH-2.0-")) && !bytes.HasPrefix(line, []byte("SSH-1.99-")) {
		return "", notSSH
	}
	soft, _, _ := bytes.Cut(line, []byte(" "))
	return headerSafe(string(soft)), nil
}
