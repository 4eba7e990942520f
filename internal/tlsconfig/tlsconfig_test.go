package tlsconfig

import (
	"crypto/tls"
	"net"
	"testing"
	"time"
)

// handshake connects client to server and reports whether the client
// could read a byte the server sends once its handshake succeeded (with
// TLS 1.3 a client learns of a rejected certificate only when it reads).
func handshake(t *testing.T, server, client *tls.Config) error {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	deadline := time.Now().Add(5 * time.Second)
	a.SetDeadline(deadline)
	b.SetDeadline(deadline)
	go func() {
		s := tls.Server(a, server)
		if err := s.Handshake(); err != nil {
			a.Close()
			return
		}
		s.Write([]byte{1})
	}()
	c := tls.Client(b, client)
	if err := c.Handshake(); err != nil {
		return err
	}
	_, err := c.Read(make([]byte, 1))
	return err
}

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	p, err := GeneratePKI(dir, []string{"127.0.0.1", "node1.example"})
	if err != nil {
		t.Fatal(err)
	}
	server, err := Server(p.ServerCert, p.ServerKey, p.CA)
	if err != nil {
		t.Fatal(err)
	}
	client, err := Client(p.ClientCert, p.ClientKey, p.CA, "node1.example")
	if err != nil {
		t.Fatal(err)
	}
	if err := handshake(t, server, client); err != nil {
		t.Fatalf("mutual TLS: %v", err)
	}
	anonymous, _ := Client("", "", p.CA, "node1.example")
	if err := handshake(t, server, anonymous); err == nil {
		t.Fatal("a client without a certificate got in")
	}
	other, _ := GeneratePKI(t.TempDir(), []string{"127.0.0.1"})
	stranger, _ := Client(other.ClientCert, other.ClientKey, p.CA, "node1.example")
	if err := handshake(t, server, stranger); err == nil {
		t.Fatal("a client certificate from another CA got in")
	}
	if _, err := Server(p.ServerCert, p.ServerKey, dir+"/missing.pem"); err == nil {
		t.Fatal("missing CA accepted")
	}
}
