package relaynode

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/clusterlink-relay/relay/actors"
	"github.com/clusterlink-relay/relay/actors/cluster"
)

// clustered reports whether c joins a cluster.
func (c *Config) clustered() bool { return len(c.ClusterEtcd) > 0 }

// validateCluster reports the nonsensical cluster fields of c.
func (c *Config) validateCluster() error {
	if !c.clustered() {
		return nil
	}
	var errs []error
	if c.NodeID == "" {
		errs = append(errs, errors.New("relaynode: a clustered node needs a NodeID (-node-id), unique in the cluster"))
	}
	if c.ClusterListen == "" {
		errs = append(errs, errors.New("relaynode: a clustered node needs ClusterListen (-cluster-listen)"))
	} else if host, port, err := net.SplitHostPort(c.ClusterListen); err != nil {
		errs = append(errs, fmt.Errorf("relaynode: ClusterListen %q: %w", c.ClusterListen, err))
	} else if unspecified(host) && (port == "0" || port == "") {
		errs = append(errs, fmt.Errorf("relaynode: ClusterListen %q: a wildcard host needs a fixed port, which peers reach at the -advertise host", c.ClusterListen))
	}
	if u, err := url.Parse(c.Advertise); c.Advertise == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("relaynode: a clustered node needs Advertise (-advertise), its public http(s) URL; got %q", c.Advertise))
	}
	if c.ClusterLeaseTTL < 0 || (c.ClusterLeaseTTL > 0 && c.ClusterLeaseTTL < time.Second) {
		errs = append(errs, fmt.Errorf("relaynode: ClusterLeaseTTL %v is below 1s", c.ClusterLeaseTTL))
	}
	n := 0
	for _, f := range []string{c.ClusterTLSCertFile, c.ClusterTLSKeyFile, c.ClusterTLSCAFile} {
		if f != "" {
			n++
		}
	}
	switch {
	case n != 0 && n != 3:
		errs = append(errs, errors.New("relaynode: ClusterTLSCertFile, ClusterTLSKeyFile and ClusterTLSCAFile go together"))
	case n == 0 && c.ClusterListen != "" && !loopbackHostPort(c.ClusterListen):
		errs = append(errs, fmt.Errorf("relaynode: cluster port %s is not loopback and has no TLS: set -cluster-tls-cert, -cluster-tls-key and -cluster-tls-ca (plaintext is allowed on loopback only)", c.ClusterListen))
	}
	if (c.EtcdTLSCertFile == "") != (c.EtcdTLSKeyFile == "") {
		errs = append(errs, errors.New("relaynode: EtcdTLSCertFile and EtcdTLSKeyFile go together"))
	}
	if c.EtcdPassword != "" && c.EtcdUser == "" {
		errs = append(errs, errors.New("relaynode: EtcdPassword without EtcdUser"))
	}
	return errors.Join(errs...)
}

// unspecified reports whether host is a wildcard: empty, 0.0.0.0 or ::.
func unspecified(host string) bool {
	if host == "" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsUnspecified()
}

// clusterAdvertise returns the cluster address to publish when
// ClusterListen's host is a wildcard, which peers cannot dial: the
// -advertise URL's host with the cluster port. Empty otherwise (the bound
// address is published).
func (c *Config) clusterAdvertise() string {
	host, port, err := net.SplitHostPort(c.ClusterListen)
	if err != nil || !unspecified(host) {
		return ""
	}
	u, err := url.Parse(c.Advertise)
	if err != nil {
		return ""
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// loopbackHostPort reports whether hostport names a loopback address
// (an IP, or "localhost").
func loopbackHostPort(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// loadPool reads a PEM CA bundle.
func loadPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate", file)
	}
	return pool, nil
}

// clusterTLS returns the cluster port's server and client TLS
// configurations, or nils for plaintext.
func (c *Config) clusterTLS() (server, client *tls.Config, err error) {
	if c.ClusterTLSCertFile == "" {
		return nil, nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.ClusterTLSCertFile, c.ClusterTLSKeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("relaynode: load cluster TLS key pair: %w", err)
	}
	pool, err := loadPool(c.ClusterTLSCAFile)
	if err != nil {
		return nil, nil, fmt.Errorf("relaynode: load cluster CA: %w", err)
	}
	server = &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		NextProtos:   []string{"h2"},
	}
	client = &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		NextProtos:   []string{"h2"},
		// Peers are dialed at the cluster address they published, which
		// their certificate need not name: the chain to the cluster CA
		// is what is checked, in VerifyConnection, instead of the
		// host name.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("cluster peer sent no certificate")
			}
			inter := x509.NewCertPool()
			for _, ic := range cs.PeerCertificates[1:] {
				inter.AddCert(ic)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
				Roots: pool, Intermediates: inter,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			if err != nil {
				return fmt.Errorf("cluster peer certificate: %w", err)
			}
			return nil
		},
	}
	return server, client, nil
}

// etcdTLS returns the etcd client's TLS configuration, or nil.
func (c *Config) etcdTLS() (*tls.Config, error) {
	if c.EtcdTLSCertFile == "" && c.EtcdTLSCAFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.EtcdTLSCAFile != "" {
		pool, err := loadPool(c.EtcdTLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("relaynode: load etcd CA: %w", err)
		}
		cfg.RootCAs = pool
	}
	if c.EtcdTLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.EtcdTLSCertFile, c.EtcdTLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("relaynode: load etcd TLS key pair: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// etcdEndpoints turns host:port endpoints into URLs, with https when TLS
// to etcd is on.
func etcdEndpoints(eps []string, tlsOn bool) []string {
	scheme := "http://"
	if tlsOn {
		scheme = "https://"
	}
	out := make([]string, 0, len(eps))
	for _, ep := range eps {
		ep = strings.TrimSpace(ep)
		if ep == "" {
			continue
		}
		if !strings.Contains(ep, "://") {
			ep = scheme + ep
		}
		out = append(out, ep)
	}
	return out
}

// joinCluster returns the engine's cluster section; the engine opens the
// etcd directory once its cluster port is bound, into *dir, which the
// caller closes after the engine.
func (c *Config) joinCluster(dir **cluster.Etcd) (*actors.ClusterConfig, error) {
	serverTLS, clientTLS, err := c.clusterTLS()
	if err != nil {
		return nil, err
	}
	etcdTLS, err := c.etcdTLS()
	if err != nil {
		return nil, err
	}
	if serverTLS == nil {
		c.Logger.Warn("cluster port without TLS: allowed on loopback only, for tests and demos; set -cluster-tls-cert, -cluster-tls-key and -cluster-tls-ca",
			slog.String("addr", c.ClusterListen))
	}
	ecfg := cluster.EtcdConfig{
		Endpoints: etcdEndpoints(c.ClusterEtcd, etcdTLS != nil),
		Node:      c.NodeID,
		TTL:       c.ClusterLeaseTTL,
		Logger:    c.Logger,
		TLS:       etcdTLS,
		Username:  c.EtcdUser,
		Password:  c.EtcdPassword,
		PublicURL: strings.TrimRight(c.Advertise, "/"),
	}
	return &actors.ClusterConfig{
		Open: func(addr string) (cluster.Directory, error) {
			ecfg.ClusterAddr = addr
			d, err := cluster.NewEtcd(ecfg)
			if err != nil {
				return nil, fmt.Errorf("relaynode: join the cluster: %w", err)
			}
			*dir = d
			return d, nil
		},
		PublicURL: c.Advertise,
		Listen:    c.ClusterListen,
		Advertise: c.clusterAdvertise(),
		ServerTLS: serverTLS,
		ClientTLS: clientTLS,
	}, nil
}

// ClusterAddr returns the address of the node's cluster port, as the
// other nodes reach it (the bound one when ClusterListen asked for port
// 0); empty on a node outside a cluster.
func (n *Node) ClusterAddr() string { return n.engine.ClusterAddr() }

// leaseHeld reports whether a clustered node holds its etcd lease; true
// on one node.
func (n *Node) leaseHeld() bool {
	d := n.engine.ClusterDirectory()
	return d == nil || d.Healthy()
}

// ClusterStatus is the cluster section of /status.json: this node's view
// of the cluster.
type ClusterStatus struct {
	// Node, Addr and PublicURL are this node's id, cluster address and
	// advertised URL.
	Node      string `json:"node"`
	Addr      string `json:"addr"`
	PublicURL string `json:"public_url"`
	// LeaseHeld says the node holds its etcd lease; LeaseAge is how long
	// it has held it.
	LeaseHeld bool   `json:"lease_held"`
	LeaseAge  string `json:"lease_age"`
	// Nodes are the nodes holding a lease, with the names they hold.
	// NodesError, when set, says why they could not be read from etcd.
	Nodes      []ClusterNodeStatus `json:"nodes"`
	NodesError string              `json:"nodes_error,omitempty"`
	// Names are every name in the directory, each with its nodes.
	Names []ClusterNameStatus `json:"names"`
	// CrossNodeDials counts the dials made here for names held on other
	// nodes; NotifyRefused the other nodes' notifies refused here.
	CrossNodeDials int64 `json:"cross_node_dials"`
	NotifyRefused  int64 `json:"notify_refused"`
}

// ClusterNodeStatus is one node of the cluster.
type ClusterNodeStatus struct {
	Node        string   `json:"node"`
	ClusterAddr string   `json:"cluster_addr"`
	PublicURL   string   `json:"public_url"`
	LeaseAge    string   `json:"lease_age"`
	Names       []string `json:"names"`
}

// ClusterNameStatus is one name of the directory and the nodes holding
// its members (a node once per member).
type ClusterNameStatus struct {
	Name  string   `json:"name"`
	Nodes []string `json:"nodes"`
}

// clusterStatus returns the cluster section, or nil on one node.
func (n *Node) clusterStatus(ctx context.Context) *ClusterStatus {
	st, ok := n.engine.ClusterStats()
	if !ok {
		return nil
	}
	dir := n.engine.ClusterDirectory()
	out := &ClusterStatus{
		Node: st.Node, Addr: st.Addr, PublicURL: st.PublicURL,
		LeaseHeld:      st.Directory.Healthy,
		LeaseAge:       st.Directory.LeaseAge.Round(time.Second).String(),
		CrossNodeDials: st.CrossDials,
		NotifyRefused:  st.NotifyRefused,
		Nodes:          []ClusterNodeStatus{},
		Names:          []ClusterNameStatus{},
	}
	byNode := map[string]map[string]bool{}
	for name, ms := range dir.Snapshot() {
		ns := ClusterNameStatus{Name: name}
		for _, m := range ms {
			ns.Nodes = append(ns.Nodes, m.Node)
			if byNode[m.Node] == nil {
				byNode[m.Node] = map[string]bool{}
			}
			byNode[m.Node][name] = true
		}
		sort.Strings(ns.Nodes)
		out.Names = append(out.Names, ns)
	}
	sort.Slice(out.Names, func(i, j int) bool { return out.Names[i].Name < out.Names[j].Name })
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	nodes, err := dir.Nodes(ctx)
	if err != nil {
		out.NodesError = err.Error()
	}
	for _, ni := range nodes {
		ns := ClusterNodeStatus{Node: ni.Node, ClusterAddr: ni.ClusterAddr, PublicURL: ni.PublicURL,
			LeaseAge: time.Since(ni.LeaseSince).Round(time.Second).String(), Names: []string{}}
		for name := range byNode[ni.Node] {
			ns.Names = append(ns.Names, name)
		}
		sort.Strings(ns.Names)
		out.Nodes = append(out.Nodes, ns)
	}
	sort.Slice(out.Nodes, func(i, j int) bool { return out.Nodes[i].Node < out.Nodes[j].Node })
	return out
}
