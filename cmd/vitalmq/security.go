package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"vitalmq/internal/audit"
	"vitalmq/internal/auth"
	"vitalmq/internal/broker"
	"vitalmq/internal/config"
	"vitalmq/internal/limiter"
	"vitalmq/internal/packet"
	"vitalmq/internal/pki"
	"vitalmq/internal/tlsconfig"
	"vitalmq/internal/topic"
)

// security adapts the identity and policy packages (pki, auth, audit) to the broker's
// Authenticator and Authorizer. A connection is one of:
//   - a device: a TLS client certificate from the built-in CA; identity = its device id,
//     client id = the device id;
//   - a user (admin, clinician, service): user name and password, argon2id, throttled;
//     client id "<user>:<anything>";
//   - anonymous: only on a loopback listener with allow_anonymous (local testing): any
//     topic but the server's $-topics.
//
// Every refusal and every successful connect is audited; passwords never are.
type security struct {
	ca       *pki.CA
	users    *auth.Users
	policy   *auth.Policies
	throttle *auth.Throttle
	audit    *audit.Log
	log      *slog.Logger
	deny     atomic.Pointer[[]string] // acl.deny_subscribe: filters nobody may subscribe to
	cfgPath  string                   // the configuration file, re-read for [acl] changes ("" for the embedded one)
	cfgMod   time.Time
	denyLog  *limiter.Limiter // audit records of ACL denials per client: a flood of denied packets must not flood the trail
	external []*pki.External  // listeners' external CAs (client_ca, client_crl), reloaded by watch
}

var (
	_ broker.Authenticator = (*security)(nil)
	_ broker.Authorizer    = (*security)(nil)
)

func (s *security) record(typ string, fields map[string]string) {
	if err := s.audit.Append(audit.Event{Type: typ, Fields: fields}); err != nil {
		s.log.Error("audit append failed", "type", typ, "err", err)
	}
}

func remoteIP(a net.Addr) string {
	if host, _, err := net.SplitHostPort(a.String()); err == nil {
		return host
	}
	return a.String()
}

// Authenticate implements broker.Authenticator.
func (s *security) Authenticate(_ context.Context, req *broker.ConnectRequest) (*broker.Client, error) {
	remote := remoteIP(req.Remote)
	fail := func(reason string, rc packet.ReasonCode, user string) (*broker.Client, error) {
		f := map[string]string{"remote": remote, "listener": req.Listener, "reason": reason, "client_id": req.ClientID}
		if user != "" {
			f["username"] = user
		}
		s.record(audit.TypeAuthFailure, f)
		return nil, rc
	}
	if req.TLS != nil && len(req.TLS.PeerCertificates) > 0 {
		leaf := req.TLS.PeerCertificates[0] // verified by the TLS handshake
		device, err := pki.DeviceID(leaf)
		if err != nil {
			return fail("certificate_without_device_id", packet.NotAuthorized, "")
		}
		keys := certKeys(req.TLS.PeerCertificates)
		if s.revokedExternally(keys) { // a CRL reloaded since the handshake
			return fail("certificate_revoked", packet.NotAuthorized, "")
		}
		id := auth.Identity{Device: device, Role: auth.RoleDevice}
		cid, err := auth.ResolveClientID(id, req.ClientID)
		if err != nil {
			return fail("client_id_mismatch", packet.ClientIdentifierNotValid, "")
		}
		s.record(audit.TypeConnect, map[string]string{"device": device, "client_id": cid, "remote": remote, "listener": req.Listener})
		return &broker.Client{ClientID: cid, Listener: req.Listener, Remote: req.Remote, ValidUntil: certExpiry(req.TLS),
			Attrs: map[string]string{"role": auth.RoleDevice, "device": device, "cert": keys}}, nil
	}
	if !req.HasUsername {
		return nil, fmt.Errorf("%w: no credentials", packet.NotAuthorized) // anonymous: the listener decides
	}
	if req.TLS == nil && !isLoopbackAddr(req.Remote) {
		return fail("password_without_tls", packet.NotAuthorized, req.Username)
	}
	if wait, ok := s.throttle.Check(req.Username, remote); !ok {
		s.record(audit.TypeAuthThrottle, map[string]string{"username": req.Username, "remote": remote, "reason": "locked_out_" + wait.Round(time.Second).String()})
		return nil, packet.Banned // T31: refused during the lock-out, even with the right password
	}
	if err := s.users.Reload(); err != nil { // a stat when unchanged: "vitalmq user add" takes effect at once
		s.log.Error("reloading users failed; keeping the previous ones", "err", err)
	}
	u, err := s.users.Verify(req.Username, string(req.Password))
	if err != nil {
		s.throttle.Failure(req.Username, remote)
		return fail("bad_credentials", packet.BadUserNameOrPassword, req.Username)
	}
	s.throttle.Success(req.Username, remote)
	id := auth.Identity{Username: u.Name, Role: u.Role}
	cid, err := auth.ResolveClientID(id, req.ClientID)
	if err != nil {
		return fail("client_id_not_allowed", packet.ClientIdentifierNotValid, u.Name)
	}
	s.record(audit.TypeConnect, map[string]string{"username": u.Name, "role": u.Role, "client_id": cid, "remote": remote, "listener": req.Listener})
	return &broker.Client{ClientID: cid, Username: u.Name, Listener: req.Listener, Remote: req.Remote,
		Attrs: map[string]string{"role": u.Role}}, nil
}

// certKeys names the certificates of a client's chain (leaf and intermediates it sent) as a
// CRL revokes them, space-separated: a new CRL that revokes any of them ends the session.
func certKeys(chain []*x509.Certificate) string {
	keys := make([]string, len(chain))
	for i, c := range chain {
		keys[i] = pki.CertKey(c)
	}
	return strings.Join(keys, " ")
}

// revokedExternally reports whether an external CA's current CRL revokes one of keys.
func (s *security) revokedExternally(keys string) bool {
	for _, ext := range s.external {
		for _, k := range strings.Fields(keys) {
			if ext.Revoked(k) {
				return true
			}
		}
	}
	return false
}

// certExpiry is when the first certificate of the client's chain expires: the session
// ends then (it would not be accepted again).
func certExpiry(cs *tls.ConnectionState) time.Time {
	chain := cs.PeerCertificates
	if len(cs.VerifiedChains) > 0 {
		chain = cs.VerifiedChains[0]
	}
	t := chain[0].NotAfter
	for _, c := range chain[1:] {
		if c.NotAfter.Before(t) {
			t = c.NotAfter
		}
	}
	return t
}

func isLoopbackAddr(a net.Addr) bool {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.IsLoopback()
	}
	return false
}

func identity(c *broker.Client) auth.Identity {
	return auth.Identity{Username: c.Username, Device: c.Attrs["device"], ClientID: c.ClientID, Role: c.Attrs["role"]}
}

func reserved(name string) bool { return len(name) > 0 && name[0] == '$' }

// removedUser reports whether c logged in with a password as a user who no longer exists.
// Such a session has no rights left, even before watch disconnects it: it may have bound
// after watch's last scan, since nothing bounds the time from Verify to the session.
func (s *security) removedUser(c *broker.Client) bool {
	if c.Username == "" {
		return false // a device certificate
	}
	_, ok := s.users.Get(c.Username)
	return !ok
}

// CanPublish implements broker.Authorizer.
func (s *security) CanPublish(c *broker.Client, name string) bool {
	if c.Anonymous {
		return !reserved(name)
	}
	if s.removedUser(c) {
		return false
	}
	ok := s.policy.Load().CanPublish(identity(c), name)
	if !ok && s.denyLog.Allow(c.ClientID) {
		s.record(audit.TypeACLDeny, map[string]string{"client_id": c.ClientID, "action": "publish", "topic": name})
	}
	return ok
}

// CanSubscribe implements broker.Authorizer.
func (s *security) CanSubscribe(c *broker.Client, filter string) bool {
	for _, d := range *s.deny.Load() {
		if topic.Covers(d, filter) || topic.Covers(filter, d) {
			return false
		}
	}
	if c.Anonymous {
		return !reserved(filter)
	}
	if s.removedUser(c) {
		return false
	}
	ok := s.policy.Load().CanSubscribe(identity(c), filter)
	if !ok && s.denyLog.Allow(c.ClientID) {
		s.record(audit.TypeACLDeny, map[string]string{"client_id": c.ClientID, "action": "subscribe", "topic_filter": filter})
	}
	return ok
}

// CanReceive implements broker.Authorizer: checked on every delivery, not audited (a
// wildcard subscription legitimately skips topics it may not read).
func (s *security) CanReceive(c *broker.Client, name string) bool {
	for _, d := range *s.deny.Load() {
		if topic.Match(d, name) {
			return false
		}
	}
	if c.Anonymous {
		return !reserved(name)
	}
	return !s.removedUser(c) && s.policy.Load().CanReceive(identity(c), name)
}

// watch applies changes made by the CLI while the broker runs, until ctx ends: revoked
// devices are disconnected and their sessions purged within a second; users and the CA
// index are reloaded.
func (s *security) watch(ctx context.Context, srv *broker.Server) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	revoked := s.revokedDevices()
	sweep := userSweep{window: srv.Config().ConnectTimeout + time.Second}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := s.ca.Reload(); err != nil {
			s.log.Error("reloading the device index failed; keeping the previous one", "err", err)
		}
		if err := s.users.Reload(); err != nil {
			s.log.Error("reloading users failed; keeping the previous ones", "err", err)
		}
		s.reloadACL()
		now := s.revokedDevices()
		for id := range now {
			if revoked[id] {
				continue
			}
			if srv.Kick(id, packet.AdministrativeAction, true) {
				s.record(audit.TypeKick, map[string]string{"device": id, "client_id": id, "reason": "certificate_revoked"})
				s.log.Info("revoked device disconnected", "device", id)
			}
		}
		revoked = now
		s.reloadExternal(srv)
		if !sweep.due(s.users.Generation(), time.Now()) {
			continue
		}
		// Sessions of users that no longer exist end.
		users := s.userNames()
		gone := map[string]bool{}
		srv.KickWhere(func(c *broker.Client) bool {
			if c.Anonymous || c.Username == "" || users[c.Username] {
				return false
			}
			gone[c.Username] = true
			return true
		}, packet.NotAuthorized, true)
		for name := range gone {
			s.record(audit.TypeKick, map[string]string{"username": name, "reason": "user_removed"})
		}
	}
}

// reloadExternal re-reads the external CAs' bundles and CRLs that changed, and disconnects
// live sessions whose certificate a new CRL revokes (their sessions are purged, as for a
// revoked built-in device).
func (s *security) reloadExternal(srv *broker.Server) {
	for _, ext := range s.external {
		changed, err := ext.Reload()
		if err != nil {
			s.log.Error("external CA not reloaded; the previous one stays in force", "err", err)
			s.record(audit.TypeConfigChange, map[string]string{"setting": "client_ca", "reason": "reload_failed"})
			continue
		}
		if !changed {
			continue
		}
		s.log.Info("external CA reloaded")
		s.record(audit.TypeConfigChange, map[string]string{"setting": "client_ca", "action": "reloaded"})
		kicked := map[string]string{}
		srv.KickWhere(func(c *broker.Client) bool {
			if s.revokedExternally(c.Attrs["cert"]) {
				kicked[c.ClientID] = c.Attrs["device"]
				return true
			}
			return false
		}, packet.AdministrativeAction, true)
		for cid, device := range kicked {
			s.record(audit.TypeKick, map[string]string{"device": device, "client_id": cid, "reason": "certificate_revoked"})
			s.log.Info("revoked device disconnected", "device", device)
		}
	}
}

// userSweep decides when watch checks every session against the users: not while the users
// stay the same (a scan of all sessions costs the broker's core ~0.5 ms per 10,000), and
// every round for window after they change (from the start, for sessions restored from
// disk), since an authentication that read the users before the change may bind its
// session after the first scan. A session that binds later still is not disconnected until
// the users change again, but has no rights (removedUser).
type userSweep struct {
	gen    uint64 // the users' generation last seen; 0 before the first round
	until  time.Time
	window time.Duration
}

func (w *userSweep) due(gen uint64, now time.Time) bool {
	if gen != w.gen {
		w.gen, w.until = gen, now.Add(w.window)
	}
	return !now.After(w.until)
}

func (s *security) userNames() map[string]bool {
	m := map[string]bool{}
	for _, u := range s.users.List() {
		m[u.Name] = true
	}
	return m
}

// reloadACL applies a changed [acl] section of the configuration file. A file that does not
// parse, or a policy that is invalid, keeps the previous policy in force (CASES T91).
func (s *security) reloadACL() {
	if s.cfgPath == "" {
		return
	}
	st, err := os.Stat(s.cfgPath)
	if err != nil || !st.ModTime().After(s.cfgMod) {
		return
	}
	s.cfgMod = st.ModTime()
	var deny []string
	err = s.policy.Reload(func() (auth.PolicyConfig, error) {
		f, err := config.Load(s.cfgPath)
		if err != nil {
			return auth.PolicyConfig{}, err
		}
		deny = f.ACL.DenySubscribe
		if len(f.ACL.Rules) == 0 {
			return auth.PolicyConfig{Rules: auth.DefaultRules()}, nil
		}
		return auth.PolicyConfig{Rules: f.ACL.Rules}, nil
	})
	if err != nil {
		s.log.Error("access policy not reloaded; the previous one stays in force", "err", err)
		s.record(audit.TypeConfigChange, map[string]string{"setting": "acl", "reason": "reload_failed"})
		return
	}
	s.deny.Store(&deny)
	s.log.Info("access policy reloaded", "config", s.cfgPath)
	s.record(audit.TypeConfigChange, map[string]string{"setting": "acl", "action": "reloaded"})
}

// revokedDevices are the devices with no valid certificate left.
func (s *security) revokedDevices() map[string]bool {
	list, err := s.ca.Devices()
	if err != nil {
		return nil
	}
	valid := map[string]bool{}
	out := map[string]bool{}
	for _, d := range list {
		if d.Revoked {
			out[d.ID] = true
		} else {
			valid[d.ID] = true
		}
	}
	for id := range valid {
		delete(out, id) // re-enrolled with a new certificate
	}
	return out
}

// serverTLS builds a listener's TLS configuration: the configured certificate or the
// built-in server certificate, and client certificates per client_auth, verified against
// the built-in CA (with revocation, also on resumed sessions) or an external CA bundle.
func (s *security) serverTLS(l config.Listener) (*tls.Config, error) {
	certFile, keyFile := l.CertFile, l.KeyFile
	if certFile == "" {
		certFile, keyFile = s.ca.ServerCertFiles()
	}
	cfg, err := tlsconfig.Server(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("listener %s: %w", l.Name, err)
	}
	if l.ClientAuth == "none" {
		return cfg, nil
	}
	verify := s.ca.VerifyConnection
	cfg.ClientCAs = s.ca.Pool()
	cfg.ClientAuth = tls.VerifyClientCertIfGiven
	if l.ClientAuth == "required" {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	if l.ClientCA != "" {
		// An external CA: the chain and its CRL are checked by pki.External against the
		// files' current contents, so crypto/tls only asks for the certificate.
		ext, err := pki.OpenExternal(l.ClientCA, l.ClientCRL)
		if err != nil {
			return nil, fmt.Errorf("listener %s: client_ca/client_crl: %w", l.Name, err)
		}
		s.external = append(s.external, ext)
		verify, cfg.ClientCAs, cfg.ClientAuth = ext.VerifyConnection, nil, tls.RequestClientCert
		if l.ClientAuth == "required" {
			cfg.ClientAuth = tls.RequireAnyClientCert
		}
	}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			if l.ClientAuth == "required" {
				return errors.New("client certificate required")
			}
			return nil // a user: password authentication follows
		}
		return verify(cs)
	}
	return cfg, nil
}
