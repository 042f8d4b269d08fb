package auth

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"vitalmq/internal/topic"
)

var (
	dev1    = Identity{Role: RoleDevice, Device: "bed-12-hr", ClientID: "bed-12-hr"}
	dev2    = Identity{Role: RoleDevice, Device: "bed-13-spo2", ClientID: "bed-13-spo2"}
	clin    = Identity{Role: RoleClinician, Username: "nurse.amy", ClientID: "nurse.amy:tablet"}
	svc     = Identity{Role: RoleService, Username: "hub", ClientID: "hub:1"}
	admin   = Identity{Role: RoleAdmin, Username: "admin", ClientID: "admin:cli"}
	unknown = Identity{Role: "root", Username: "admin", Device: "bed-12-hr", ClientID: "x"}
	noRole  = Identity{Username: "admin", Device: "bed-12-hr"}
	caseBad = Identity{Role: "Admin", Username: "admin"}
)

type op int

const (
	pub op = iota
	sub
	recv
)

func (o op) String() string { return [...]string{"CanPublish", "CanSubscribe", "CanReceive"}[o] }

func decide(p *Policy, o op, id Identity, s string) bool {
	switch o {
	case pub:
		return p.CanPublish(id, s)
	case sub:
		return p.CanSubscribe(id, s)
	}
	return p.CanReceive(id, s)
}

type aclCase struct {
	name string
	id   Identity
	op   op
	s    string
	want bool
}

func runCases(t *testing.T, p *Policy, cases []aclCase) {
	t.Helper()
	for _, c := range cases {
		if got := decide(p, c.op, c.id, c.s); got != c.want {
			t.Errorf("%s: %v(%s %q, %q) = %v, want %v", c.name, c.op, c.id.Role, c.id.Device+c.id.Username, c.s, got, c.want)
		}
	}
}

func TestDefaultPolicy(t *testing.T) {
	p := DefaultPolicy()
	runCases(t, p, []aclCase{
		// Devices publish only under their own subtree.
		{"own telemetry", dev1, pub, "dev/bed-12-hr/vitals/hr", true},
		{"own subtree root", dev1, pub, "dev/bed-12-hr", true},
		{"other device's telemetry", dev1, pub, "dev/bed-13-spo2/vitals/hr", false},
		{"prefix of own id", dev1, pub, "dev/bed-12-hr-x/vitals", false},
		{"own id as prefix of level", dev1, pub, "dev/bed-12/vitals", false},
		{"device publishes a command", dev1, pub, "cmd/bed-13-spo2", false},
		{"device publishes own command", dev1, pub, "cmd/bed-12-hr", false},
		{"device raises an alert", dev1, pub, "alert/ward3", false},
		{"wildcard in name", dev1, pub, "dev/bed-12-hr/#", false},
		{"plus in name", dev1, pub, "dev/+/hr", false},
		{"empty name", dev1, pub, "", false},
		{"NUL in name", dev1, pub, "dev/bed-12-hr/\x00", false},
		{"bad UTF-8 in name", dev1, pub, "dev/bed-12-hr/\xff", false},
		{"empty level escape", dev1, pub, "dev//bed-12-hr", false},
		// T62/T63: will topics go through CanPublish.
		{"T62 will to another device's command", dev1, pub, "cmd/bed-13-spo2", false},
		{"T62 will into another subtree", dev1, pub, "dev/bed-13-spo2/cmd", false},
		{"T63 will into $SYS", dev1, pub, "$SYS/broker/x", false},
		{"T63 will into $CONTROL", dev1, pub, "$CONTROL/dynamic-security/v1", false},
		{"T63 admin will into $CONTROL", admin, pub, "$CONTROL/dynamic-security/v1", false},
		{"admin publishes into $SYS", admin, pub, "$SYS/broker/clients", false},
		// Device subscriptions: exactly its command topic.
		{"own command topic", dev1, sub, "cmd/bed-12-hr", true},
		{"own command, shared", dev1, sub, "$share/g/cmd/bed-12-hr", true},
		{"other device's commands", dev1, sub, "cmd/bed-13-spo2", false},
		{"below own command topic", dev1, sub, "cmd/bed-12-hr/x", false},
		{"T48 #", dev1, sub, "#", false},
		{"T49 +/+/#", dev1, sub, "+/+/#", false},
		{"T49 dev/#", dev1, sub, "dev/#", false},
		{"cmd/+", dev1, sub, "cmd/+", false},
		{"cmd/#", dev1, sub, "cmd/#", false},
		{"own command with # (wildcards refused for devices)", dev1, sub, "cmd/bed-12-hr/#", false},
		{"own telemetry", dev1, sub, "dev/bed-12-hr/#", false},
		{"T50 $SYS", dev1, sub, "$SYS/#", false},
		{"T51 shared other device", dev1, sub, "$share/g/cmd/bed-13-spo2", false},
		{"T51 shared #", dev1, sub, "$share/g/#", false},
		{"T53 malformed share", dev1, sub, "$share/g", false},
		{"T53 empty share name", dev1, sub, "$share//cmd/bed-12-hr", false},
		{"T53 wildcard share name", dev1, sub, "$share/g+/cmd/bed-12-hr", false},
		{"T57 misplaced #", dev1, sub, "cmd/#/x", false},
		{"empty filter", dev1, sub, "", false},
		{"device receives own command", dev1, recv, "cmd/bed-12-hr", true},
		{"device receives other command", dev1, recv, "cmd/bed-13-spo2", false},
		{"device receives telemetry", dev1, recv, "dev/bed-12-hr/hr", false},
		{"device receives $SYS", dev1, recv, "$SYS/broker/load", false},
		{"other device, own command", dev2, sub, "cmd/bed-13-spo2", true},
		{"other device, own telemetry", dev2, pub, "dev/bed-13-spo2/spo2", true},

		// Clinicians read telemetry and alerts, publish nothing.
		{"clinician reads dev/#", clin, sub, "dev/#", true},
		{"clinician reads one device", clin, sub, "dev/bed-12-hr/#", true},
		{"clinician reads one vital everywhere", clin, sub, "dev/+/vitals/hr", true},
		{"clinician reads alerts", clin, sub, "alert/#", true},
		{"clinician shared dev/#", clin, sub, "$share/dash/dev/#", true},
		{"clinician T48 #", clin, sub, "#", false},
		{"clinician T49 +/+/#", clin, sub, "+/+/#", false},
		{"clinician +/#", clin, sub, "+/#", false},
		{"clinician +/vitals", clin, sub, "+/vitals", false},
		{"clinician cmd/#", clin, sub, "cmd/#", false},
		{"clinician T50 $SYS/#", clin, sub, "$SYS/#", false},
		{"clinician T51 shared #", clin, sub, "$share/g/#", false},
		{"clinician shared $SYS", clin, sub, "$share/g/$SYS/#", false},
		{"clinician publishes telemetry", clin, pub, "dev/bed-12-hr/hr", false},
		{"clinician publishes a command", clin, pub, "cmd/bed-12-hr", false},
		{"clinician publishes an alert", clin, pub, "alert/x", false},
		{"clinician receives telemetry", clin, recv, "dev/bed-13-spo2/vitals/spo2", true},
		{"clinician receives alert", clin, recv, "alert/ward3/high", true},
		{"clinician receives a command", clin, recv, "cmd/bed-12-hr", false},
		{"clinician receives $SYS", clin, recv, "$SYS/broker/load", false},
		{"clinician receives $CONTROL", clin, recv, "$CONTROL/x", false},

		// Services: commands and alerts out, telemetry and alerts in.
		{"service sends a command", svc, pub, "cmd/bed-12-hr", true},
		{"service below a command topic", svc, pub, "cmd/bed-12-hr/x", false},
		{"service raises an alert", svc, pub, "alert/ward3/high", true},
		{"service forges telemetry", svc, pub, "dev/bed-12-hr/hr", false},
		{"service into $SYS", svc, pub, "$SYS/x", false},
		{"service reads dev/#", svc, sub, "dev/#", true},
		{"service reads alerts", svc, sub, "alert/#", true},
		{"service reads commands", svc, sub, "cmd/#", false},
		{"service #", svc, sub, "#", false},
		{"service receives telemetry", svc, recv, "dev/x/hr", true},
		{"service receives commands", svc, recv, "cmd/x", false},

		// Admin: everything, $SYS included for reading; $ isolation still holds for '#'.
		{"admin #", admin, sub, "#", true},
		{"admin $SYS/#", admin, sub, "$SYS/#", true},
		{"admin $SYS/broker/+", admin, sub, "$SYS/broker/+", true},
		{"admin +/broker/#", admin, sub, "+/broker/#", true},
		{"admin $CONTROL", admin, sub, "$CONTROL/#", false},
		{"admin shared $SYS", admin, sub, "$share/g/$SYS/#", true},
		{"admin publishes a command", admin, pub, "cmd/bed-12-hr", true},
		{"admin receives $SYS", admin, recv, "$SYS/broker/load", true},
		{"admin receives $CONTROL", admin, recv, "$CONTROL/x", false},
		{"admin receives telemetry", admin, recv, "dev/x/hr", true},

		// Unknown, empty or miscased roles: deny.
		{"unknown role pub", unknown, pub, "dev/bed-12-hr/hr", false},
		{"unknown role sub", unknown, sub, "cmd/bed-12-hr", false},
		{"unknown role recv", unknown, recv, "dev/x", false},
		{"no role", noRole, sub, "cmd/bed-12-hr", false},
		{"no role pub", noRole, pub, "dev/bed-12-hr/hr", false},
		{"Admin", caseBad, sub, "#", false},
	})
}

// TestTemplateInjection: identities with '+', '#', '/', U+0000 or a leading '$' never widen a
// templated rule (CASES T25, T93).
func TestTemplateInjection(t *testing.T) {
	p, err := ParsePolicy(PolicyConfig{Rules: []Rule{
		{Role: RoleClinician, Publish: []string{"rpm/{client_id}/#"}, Subscribe: []string{"rpm/{client_id}/#", "user/{username}/#"}},
		{Role: RoleService, Subscribe: []string{"{client_id}/#"}, Publish: []string{"{username}"}},
		{Role: RoleDevice, Publish: []string{"dev/{device}/#"}, Subscribe: []string{"cmd/{device}", "{device}/#"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ok := Identity{Role: RoleClinician, Username: "p1dev", ClientID: "p1"}
	cases := []aclCase{
		{"legit publish", ok, pub, "rpm/p1/hr", true},
		{"legit subscribe", ok, sub, "rpm/p1/#", true},
		{"legit username", ok, sub, "user/p1dev/x", true},
		{"other subtree", ok, pub, "rpm/p2/hr", false},
	}
	for _, bad := range []string{"+", "#", "p1/../p2", "p2/hr", "", "$SYS", "a\x00b", "\xff", "+/+", "p2/#"} {
		idc := Identity{Role: RoleClinician, Username: "p1dev", ClientID: bad}
		cases = append(cases,
			aclCase{"T25 client id " + bad, idc, pub, "rpm/p2/hr", false},
			aclCase{"T25 client id " + bad, idc, pub, "rpm/p1/hr", false},
			aclCase{"T25 client id " + bad, idc, sub, "rpm/+/hr", false},
			aclCase{"T25 client id " + bad, idc, sub, "rpm/#", false},
			aclCase{"T25 client id " + bad, idc, recv, "rpm/p2/hr", false},
		)
		idu := Identity{Role: RoleClinician, Username: bad, ClientID: "zz"}
		cases = append(cases,
			aclCase{"T25 username " + bad, idu, sub, "user/+/x", false},
			aclCase{"T25 username " + bad, idu, recv, "user/p2/x", false},
		)
		ids := Identity{Role: RoleService, Username: bad, ClientID: bad}
		cases = append(cases,
			aclCase{"T25 first-level client id " + bad, ids, sub, "$SYS/#", false},
			aclCase{"T25 first-level client id " + bad, ids, recv, "$SYS/broker/load", false},
			aclCase{"T25 first-level client id " + bad, ids, sub, "#", false},
			aclCase{"T25 first-level username " + bad, ids, pub, "$SYS", false},
		)
		idd := Identity{Role: RoleDevice, Device: bad, ClientID: bad}
		cases = append(cases,
			aclCase{"T25 device " + bad, idd, pub, "dev/p2/hr", false},
			aclCase{"T25 device " + bad, idd, sub, "cmd/p2", false},
			aclCase{"T25 device " + bad, idd, recv, "cmd/p2", false},
			aclCase{"T25 device " + bad, idd, recv, "$SYS/x", false},
		)
	}
	// A device id must be a valid pki device id, not merely a safe level.
	for _, bad := range []string{"Bed-12", "bed_12", "bed.12", "bed 12", strings.Repeat("a", 65), "bed:12"} {
		idd := Identity{Role: RoleDevice, Device: bad}
		cases = append(cases, aclCase{"device id " + bad, idd, pub, "dev/" + bad + "/hr", false})
	}
	runCases(t, p, cases)
}

func TestParsePolicyErrors(t *testing.T) {
	for name, r := range map[string]Rule{
		"unknown role":          {Role: "root", Subscribe: []string{"#"}},
		"empty role":            {Role: "", Subscribe: []string{"#"}},
		"miscased role":         {Role: "Admin", Subscribe: []string{"#"}},
		"misplaced #":           {Role: RoleAdmin, Subscribe: []string{"dev/#/x"}},
		"misplaced +":           {Role: RoleAdmin, Subscribe: []string{"dev/a+"}},
		"empty pattern":         {Role: RoleAdmin, Publish: []string{""}},
		"NUL":                   {Role: RoleAdmin, Publish: []string{"dev/\x00"}},
		"bad UTF-8":             {Role: RoleAdmin, Publish: []string{"dev/\xff"}},
		"unknown template":      {Role: RoleDevice, Publish: []string{"dev/{devices}/#"}},
		"partial template":      {Role: RoleDevice, Publish: []string{"dev/x{device}/#"}},
		"template suffix":       {Role: RoleDevice, Publish: []string{"dev/{device}x"}},
		"brace":                 {Role: RoleDevice, Publish: []string{"dev/{/#"}},
		"two templates a level": {Role: RoleDevice, Publish: []string{"dev/{device}{username}"}},
		"$SYS for clinician":    {Role: RoleClinician, Subscribe: []string{"$SYS/#"}},
		"$ for service":         {Role: RoleService, Publish: []string{"$CONTROL/x"}},
		"$ for device":          {Role: RoleDevice, Publish: []string{"${device}/x"}},
		"shared pattern":        {Role: RoleAdmin, Subscribe: []string{"$share/g/dev/#"}},
	} {
		_, err := ParsePolicy(PolicyConfig{Rules: []Rule{{Role: RoleAdmin, Subscribe: []string{"#"}}, r}})
		if !errors.Is(err, ErrBadPolicy) {
			t.Errorf("%s: ParsePolicy = %v, want ErrBadPolicy", name, err)
		}
	}
	// Accepted edge cases.
	if _, err := ParsePolicy(PolicyConfig{Rules: []Rule{
		{Role: RoleAdmin, Subscribe: []string{"$SYS/#", "#", "+"}},
		{Role: RoleDevice, Publish: []string{"{device}", "{device}/{client_id}/{username}/#"}},
		{Role: RoleDevice, Subscribe: []string{"cmd/{device}"}}, // several rules per role add up
	}}); err != nil {
		t.Fatal(err)
	}
}

// TestEmptyPolicyDeniesEverything: no rules (an empty or comment-only ACL file) deny every
// publish, subscribe and delivery for every identity (CASES T89).
func TestEmptyPolicyDeniesEverything(t *testing.T) {
	empty, err := ParsePolicy(PolicyConfig{})
	if err != nil {
		t.Fatal(err)
	}
	noPatterns, err := ParsePolicy(PolicyConfig{Rules: []Rule{{Role: RoleAdmin}, {Role: RoleDevice}}})
	if err != nil {
		t.Fatal(err)
	}
	var nilPolicy *Policy
	var zeroHolder Policies
	nilHolder := NewPolicies(nil)
	for name, d := range map[string]interface {
		CanPublish(Identity, string) bool
		CanSubscribe(Identity, string) bool
		CanReceive(Identity, string) bool
	}{"empty": empty, "no patterns": noPatterns, "nil": nilPolicy, "zero holder": &zeroHolder, "nil holder": nilHolder} {
		for _, id := range []Identity{dev1, clin, svc, admin, unknown, noRole} {
			for _, s := range []string{"#", "dev/bed-12-hr/hr", "cmd/bed-12-hr", "$SYS/#", "$SYS/x", "a"} {
				if d.CanPublish(id, s) || d.CanSubscribe(id, s) || d.CanReceive(id, s) {
					t.Errorf("%s policy allowed %s on %q", name, id.Role, s)
				}
			}
		}
	}
	if !empty.Empty() || !noPatterns.Empty() || !nilPolicy.Empty() || DefaultPolicy().Empty() {
		t.Error("Empty() wrong")
	}
}

// TestPoliciesReload: a failed reload (unreadable file, invalid policy) keeps the old policy
// (CASES T91); a good one replaces it.
func TestPoliciesReload(t *testing.T) {
	h := NewPolicies(DefaultPolicy())
	if !h.CanSubscribe(clin, "dev/#") {
		t.Fatal("default policy not in force")
	}
	errUnreadable := errors.New("open acl.toml: permission denied")
	if err := h.Reload(func() (PolicyConfig, error) { return PolicyConfig{}, errUnreadable }); !errors.Is(err, errUnreadable) {
		t.Fatalf("Reload = %v", err)
	}
	if err := h.Reload(func() (PolicyConfig, error) {
		return PolicyConfig{Rules: []Rule{{Role: "anonymous", Subscribe: []string{"#"}}}}, nil
	}); !errors.Is(err, ErrBadPolicy) {
		t.Fatalf("Reload of an invalid policy = %v", err)
	}
	if !h.CanSubscribe(clin, "dev/#") || h.CanSubscribe(clin, "#") || !h.CanPublish(dev1, "dev/bed-12-hr/x") || !h.CanReceive(admin, "$SYS/x") {
		t.Fatal("a failed reload changed the policy")
	}
	if err := h.Reload(func() (PolicyConfig, error) {
		return PolicyConfig{Rules: []Rule{{Role: RoleClinician, Subscribe: []string{"dev/bed-12-hr/#"}}}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if h.CanSubscribe(clin, "dev/#") || !h.CanSubscribe(clin, "dev/bed-12-hr/#") || h.CanReceive(clin, "dev/bed-13-spo2/hr") {
		t.Fatal("a good reload did not take effect (revoked read must stop deliveries: T67)")
	}
	h.Store(nil)
	if h.CanSubscribe(clin, "dev/bed-12-hr/#") {
		t.Fatal("Store(nil) did not deny everything")
	}
}

func TestDefaultRulesRoundTrip(t *testing.T) {
	got := DefaultPolicy().Rules()
	want := DefaultRules()
	if !slices.EqualFunc(got, want, func(a, b Rule) bool {
		return a.Role == b.Role && slices.Equal(a.Publish, b.Publish) && slices.Equal(a.Subscribe, b.Subscribe)
	}) {
		t.Fatalf("Rules() = %+v, want %+v", got, want)
	}
	got[0].Publish[0] = "#" // a copy: the policy is immutable
	if DefaultPolicy().Rules()[0].Publish[0] != "dev/{device}/#" {
		t.Fatal("Rules() exposes the policy's slices")
	}
}

// TestSubscribeImpliesReceive: for every filter a policy lets an identity subscribe to, every
// topic name the filter matches is one the identity may receive, so a granted wildcard never
// delivers a forbidden topic. Exhaustive over a small alphabet of levels.
func TestSubscribeImpliesReceive(t *testing.T) {
	levels := []string{"dev", "cmd", "alert", "bed-12-hr", "hr", "$SYS", "", "+", "#"}
	var filters []string
	var build func(prefix string, depth int)
	build = func(prefix string, depth int) {
		for _, l := range levels {
			f := l
			if depth > 0 {
				f = prefix + "/" + l
			}
			if (topic.Limits{}).CheckFilter(f) == nil {
				filters = append(filters, f)
			}
			if depth < 3 {
				build(f, depth+1)
			}
		}
	}
	build("", 0)
	var names []string
	for _, f := range filters {
		if !strings.ContainsAny(f, "+#") {
			names = append(names, f)
		}
	}
	p := DefaultPolicy()
	for _, id := range []Identity{dev1, clin, svc, admin} {
		granted := 0
		for _, f := range filters {
			if !p.CanSubscribe(id, f) {
				continue
			}
			granted++
			for _, n := range names {
				if topic.Match(f, n) && !p.CanReceive(id, n) {
					t.Errorf("%s may subscribe %q but not receive %q", id.Role, f, n)
				}
			}
		}
		if granted == 0 {
			t.Errorf("%s granted no filter at all", id.Role)
		}
		t.Logf("%s: %d of %d filters granted, %d names", id.Role, granted, len(filters), len(names))
	}
}

func BenchmarkCanReceive(b *testing.B) {
	p := DefaultPolicy()
	b.Run("clinician", func(b *testing.B) {
		for b.Loop() {
			p.CanReceive(clin, "dev/bed-12-hr/vitals/hr")
		}
	})
	b.Run("device-template", func(b *testing.B) {
		for b.Loop() {
			p.CanReceive(dev1, "cmd/bed-12-hr")
		}
	})
}
