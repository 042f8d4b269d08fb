package auth

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"vitalmq/internal/pki"
	"vitalmq/internal/topic"
)

// Identity is what the policy decides on: who a connection authenticated as. Role is one of the
// Role constants; Device is set (from the certificate's SAN URI) for RoleDevice, Username for the
// user roles; ClientID is the connection's (resolved) client id.
type Identity struct {
	Username string
	Device   string
	ClientID string
	Role     string
}

// Rule grants one role the topic patterns it may publish to and subscribe to. A pattern is an
// MQTT topic filter ('+' and '#' allowed) in which a whole level may be one of the templates
// {device}, {client_id} or {username}, replaced per identity. Several rules for the same role add
// up.
type Rule struct {
	Role      string   `toml:"role" json:"role"`
	Publish   []string `toml:"publish" json:"publish,omitempty"`
	Subscribe []string `toml:"subscribe" json:"subscribe,omitempty"`
}

// PolicyConfig is the configuration form of a Policy (a [[acl.rule]] array in TOML).
type PolicyConfig struct {
	Rules []Rule `toml:"rule" json:"rules"`
}

// Templates usable in a pattern, each as a whole level.
const (
	TemplateDevice   = "{device}"
	TemplateClientID = "{client_id}"
	TemplateUsername = "{username}"
)

// ErrBadPolicy wraps every error of ParsePolicy.
var ErrBadPolicy = errors.New("auth: invalid policy")

// DefaultRules returns the rules of DefaultPolicy (see the package documentation).
func DefaultRules() []Rule {
	return []Rule{
		{Role: RoleDevice, Publish: []string{"dev/{device}/#"}, Subscribe: []string{"cmd/{device}"}},
		{Role: RoleClinician, Subscribe: []string{"dev/#", "alert/#"}},
		{Role: RoleService, Publish: []string{"cmd/+", "alert/#"}, Subscribe: []string{"dev/#", "alert/#"}},
		{Role: RoleAdmin, Publish: []string{"#"}, Subscribe: []string{"#", "$SYS/#"}},
	}
}

// DefaultPolicy returns the built-in policy (DefaultRules).
func DefaultPolicy() *Policy {
	p, err := ParsePolicy(PolicyConfig{Rules: DefaultRules()})
	if err != nil {
		panic(err) // the built-in rules are valid; tested
	}
	return p
}

// Policy is an immutable, role-based access policy. What no rule grants is denied: an unknown or
// empty role, a topic no pattern matches, a template whose identity value is missing or unsafe,
// and any topic or filter starting with '$' for every role but admin. A Policy with no rules (and
// a nil *Policy) denies everything. It is safe for concurrent use.
type Policy struct {
	rules []Rule
	roles map[string]*grants
}

type grants struct {
	pub, sub []pattern
}

// pattern is a compiled rule pattern. levels is set only when it holds a template.
type pattern struct {
	text   string
	levels []string
}

var ruleRoles = map[string]bool{RoleAdmin: true, RoleClinician: true, RoleService: true, RoleDevice: true}

// ParsePolicy validates cfg and compiles it. It refuses an unknown role, a pattern that is not a
// valid topic filter (templates counted as one literal level), a template that is not a whole
// level or not one of the three, a shared-subscription pattern, and a '$' pattern for any role but
// admin. An empty cfg is valid and denies everything (see Policy.Empty).
func ParsePolicy(cfg PolicyConfig) (*Policy, error) {
	p := &Policy{roles: make(map[string]*grants)}
	for i, r := range cfg.Rules {
		if !ruleRoles[r.Role] {
			return nil, fmt.Errorf("%w: rule %d: unknown role %q (want admin, clinician, service or device)", ErrBadPolicy, i+1, r.Role)
		}
		g := p.roles[r.Role]
		if g == nil {
			g = &grants{}
			p.roles[r.Role] = g
		}
		for _, list := range []struct {
			name string
			in   []string
			out  *[]pattern
		}{{"publish", r.Publish, &g.pub}, {"subscribe", r.Subscribe, &g.sub}} {
			for _, s := range list.in {
				pt, err := compilePattern(s, r.Role)
				if err != nil {
					return nil, fmt.Errorf("%w: rule %d (%s) %s pattern %q: %v", ErrBadPolicy, i+1, r.Role, list.name, s, err)
				}
				*list.out = append(*list.out, pt)
			}
		}
		p.rules = append(p.rules, Rule{Role: r.Role, Publish: append([]string(nil), r.Publish...), Subscribe: append([]string(nil), r.Subscribe...)})
	}
	return p, nil
}

func compilePattern(s, role string) (pattern, error) {
	if strings.HasPrefix(s, "$share/") {
		return pattern{}, errors.New("shared subscriptions are not patterns (a shared subscription is checked on its inner filter)")
	}
	if strings.HasPrefix(s, "$") && role != RoleAdmin {
		return pattern{}, errors.New("'$' topics are for the admin role only")
	}
	levels := strings.Split(s, "/")
	templated := false
	check := make([]string, len(levels))
	for i, l := range levels {
		check[i] = l
		if !strings.ContainsAny(l, "{}") {
			continue
		}
		switch l {
		case TemplateDevice, TemplateClientID, TemplateUsername:
			templated = true
			check[i] = "x"
		default:
			return pattern{}, errors.New("a template must be a whole level, one of {device}, {client_id}, {username}")
		}
	}
	if err := (topic.Limits{}).CheckFilter(strings.Join(check, "/")); err != nil {
		return pattern{}, err
	}
	pt := pattern{text: s}
	if templated {
		pt.levels = levels
	}
	return pt, nil
}

// Rules returns a copy of the rules p was parsed from.
func (p *Policy) Rules() []Rule {
	if p == nil {
		return nil
	}
	out := make([]Rule, len(p.rules))
	for i, r := range p.rules {
		out[i] = Rule{Role: r.Role, Publish: append([]string(nil), r.Publish...), Subscribe: append([]string(nil), r.Subscribe...)}
	}
	return out
}

// Empty reports whether p grants nothing to anyone (no rule, or only rules without patterns).
func (p *Policy) Empty() bool {
	if p == nil {
		return true
	}
	for _, g := range p.roles {
		if len(g.pub) > 0 || len(g.sub) > 0 {
			return false
		}
	}
	return true
}

// safeLevel reports whether v may replace a template: a non-empty, valid UTF-8 topic level that
// is not a wildcard and has no separator, no U+0000 and no leading '$' (which would move a
// first-level template into the reserved namespace). [CASES T25]
func safeLevel(v string) bool {
	return v != "" && v[0] != '$' && utf8.ValidString(v) && !strings.ContainsAny(v, "+#/\x00")
}

// expand returns pt for id with its templates replaced, or false when a template's value is
// missing or unsafe (the pattern then matches nothing).
func (pt *pattern) expand(id *Identity) (string, bool) {
	if pt.levels == nil {
		return pt.text, true
	}
	var b strings.Builder
	b.Grow(len(pt.text) + 64)
	for i, l := range pt.levels {
		if i > 0 {
			b.WriteByte('/')
		}
		switch l {
		case TemplateDevice:
			if !pki.ValidDeviceID(id.Device) {
				return "", false
			}
			l = id.Device
		case TemplateClientID:
			if !safeLevel(id.ClientID) {
				return "", false
			}
			l = id.ClientID
		case TemplateUsername:
			if !safeLevel(id.Username) {
				return "", false
			}
			l = id.Username
		}
		b.WriteString(l)
	}
	return b.String(), true
}

// grantsFor returns id's grants and whether the '$' namespace is open to it.
func (p *Policy) grantsFor(id *Identity) (*grants, bool) {
	if p == nil {
		return nil, false
	}
	return p.roles[id.Role], id.Role == RoleAdmin
}

var limits topic.Limits // the package defaults; the broker applies its own, stricter ones first

// CanPublish reports whether id may publish to the topic name (a PUBLISH, a will message, the
// topic an alias resolves to): a valid name matched by one of the role's publish patterns.
func (p *Policy) CanPublish(id Identity, name string) bool {
	g, dollar := p.grantsFor(&id)
	if g == nil || limits.CheckName(name) != nil || name[0] == '$' && !dollar {
		return false
	}
	for i := range g.pub {
		if f, ok := g.pub[i].expand(&id); ok && topic.Match(f, name) {
			return true
		}
	}
	return false
}

// CanSubscribe reports whether id may subscribe to filter: a valid filter (for a shared
// subscription "$share/group/inner", the inner filter is what is checked) covered by one of the
// role's subscribe patterns, i.e. every topic it can match is one the role may read
// (topic.Covers), so "#", "+/+/#" or "dev/#" asked by a role allowed only "dev/{device}/#" is
// refused rather than narrowed. Devices may not use wildcards at all.
func (p *Policy) CanSubscribe(id Identity, filter string) bool {
	g, dollar := p.grantsFor(&id)
	if g == nil || limits.CheckFilter(filter) != nil {
		return false
	}
	if _, inner, ok, err := topic.ParseShared(filter); ok {
		if err != nil {
			return false
		}
		filter = inner
	}
	if filter[0] == '$' && !dollar {
		return false
	}
	if id.Role == RoleDevice && strings.ContainsAny(filter, "+#") {
		return false
	}
	for i := range g.sub {
		if f, ok := g.sub[i].expand(&id); ok && topic.Covers(f, filter) {
			return true
		}
	}
	return false
}

// CanReceive reports whether id may receive a message published on the topic name (checked per
// delivery, retained and queued messages included): name must be matched by one of the role's
// subscribe patterns. name is trusted to be a valid topic name (it passed CanPublish's checks when
// it was published).
func (p *Policy) CanReceive(id Identity, name string) bool {
	g, dollar := p.grantsFor(&id)
	if g == nil || name == "" || name[0] == '$' && !dollar {
		return false
	}
	for i := range g.sub {
		if f, ok := g.sub[i].expand(&id); ok && topic.Match(f, name) {
			return true
		}
	}
	return false
}

// Policies holds the current Policy for live reload: readers Load it (or call its decision
// methods, which do) without locking, and a new policy replaces it atomically. The zero value
// holds no policy and denies everything.
type Policies struct {
	cur atomic.Pointer[Policy]
}

// NewPolicies returns a holder of p.
func NewPolicies(p *Policy) *Policies {
	h := &Policies{}
	h.Store(p)
	return h
}

// Load returns the current policy (nil, which denies everything, if none was stored).
func (h *Policies) Load() *Policy { return h.cur.Load() }

// Store replaces the current policy with p (nil: deny everything).
func (h *Policies) Store(p *Policy) {
	if p == nil {
		p = &Policy{}
	}
	h.cur.Store(p)
}

// Reload loads a configuration with load, parses it and, only if both succeed, replaces the current
// policy; on any error the previous policy stays in force and the error is returned. [CASES T91]
func (h *Policies) Reload(load func() (PolicyConfig, error)) error {
	cfg, err := load()
	if err != nil {
		return fmt.Errorf("auth: policy reload failed, keeping the previous policy: %w", err)
	}
	p, err := ParsePolicy(cfg)
	if err != nil {
		return fmt.Errorf("auth: policy reload failed, keeping the previous policy: %w", err)
	}
	h.Store(p)
	return nil
}

// CanPublish is h.Load().CanPublish.
func (h *Policies) CanPublish(id Identity, name string) bool { return h.Load().CanPublish(id, name) }

// CanSubscribe is h.Load().CanSubscribe.
func (h *Policies) CanSubscribe(id Identity, filter string) bool {
	return h.Load().CanSubscribe(id, filter)
}

// CanReceive is h.Load().CanReceive.
func (h *Policies) CanReceive(id Identity, name string) bool { return h.Load().CanReceive(id, name) }
