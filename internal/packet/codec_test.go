package packet_test

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"vitalmq/internal/packet"
)

var update = flag.Bool("update", false, "rewrite the golden wire files in testdata/")

// codecCase is one row of the codec table: whole packets (fixed header included) as hex.
type codecCase struct {
	name    string
	version byte   // protocol level the connection negotiated (CONNECT rows: the level they carry)
	wire    string // hex
	// Valid rows: the decoded packet. encode(want) must equal wire unless decodeOnly.
	want       any
	decodeOnly bool // valid but not the canonical form the encoder produces
	// Rejected rows: the reason code the error carries, an optional errors.Is target and,
	// for CONNECT, the protocol level left in Connect.Version.
	code  packet.ReasonCode
	is    error
	level byte
}

const (
	v3 = packet.Version31
	v4 = packet.Version311
	v5 = packet.Version5
)

// Short names for the property identifiers used in the table.
const (
	pPFI     = packet.PropPayloadFormat
	pExpiry  = packet.PropMessageExpiry
	pCType   = packet.PropContentType
	pRTopic  = packet.PropResponseTopic
	pCorr    = packet.PropCorrelationData
	pSessExp = packet.PropSessionExpiry
	pACID    = packet.PropAssignedClientID
	pSKA     = packet.PropServerKeepAlive
	pAMethod = packet.PropAuthMethod
	pAData   = packet.PropAuthData
	pRPI     = packet.PropRequestProblemInfo
	pWDelay  = packet.PropWillDelay
	pRRI     = packet.PropRequestResponseInfo
	pRInfo   = packet.PropResponseInfo
	pSRef    = packet.PropServerReference
	pReason  = packet.PropReasonString
	pRMax    = packet.PropReceiveMaximum
	pTAMax   = packet.PropTopicAliasMaximum
	pTAlias  = packet.PropTopicAlias
	pMaxQoS  = packet.PropMaximumQoS
	pRetAv   = packet.PropRetainAvailable
	pMaxPkt  = packet.PropMaximumPacketSize
	pWildAv  = packet.PropWildcardSubAvailable
	pSubIDAv = packet.PropSubIDAvailable
	pShareAv = packet.PropSharedSubAvailable
)

// validCases are the rows that decode. Their names are the golden file names.
func validCases() []codecCase {
	return []codecCase{
		// CONNECT 3.1 / 3.1.1
		{name: "connect_v31_mqisdp", version: v3,
			wire: "10 10 00 06 4D 51 49 73 64 70 03 02 00 3C 00 02 70 31",
			want: &packet.Connect{Version: 3, CleanStart: true, KeepAlive: 60, ClientID: "p1"}},
		{name: "connect_v311_minimal", version: v4,
			wire: "10 0E 00 04 4D 51 54 54 04 02 00 3C 00 02 70 31",
			want: &packet.Connect{Version: 4, CleanStart: true, KeepAlive: 60, ClientID: "p1"}},
		{name: "connect_v311_empty_clientid_keepalive_0", version: v4,
			wire: "10 0C 00 04 4D 51 54 54 04 00 00 00 00 00",
			want: &packet.Connect{Version: 4}},
		{name: "connect_v311_user_password", version: v4, // C4(p1)
			wire: "10 1A 00 04 4D 51 54 54 04 C2 00 3C 00 02 70 31 00 05 70 31 64 65 76 00 03 70 77 31",
			want: &packet.Connect{Version: 4, CleanStart: true, KeepAlive: 60, ClientID: "p1",
				HasUser: true, Username: "p1dev", HasPass: true, Password: []byte("pw1")}},
		{name: "connect_v311_will_qos1_user_password", version: v4, // T62
			wire: "10 2C 00 04 4D 51 54 54 04 CE 00 3C 00 02 70 31 00 0A 72 70 6D 2F 70 32 2F 63 6D 64 00 04 6F 70 65 6E 00 05 70 31 64 65 76 00 03 70 77 31",
			want: &packet.Connect{Version: 4, CleanStart: true, KeepAlive: 60, ClientID: "p1",
				HasWill: true, Will: packet.Will{Topic: "rpm/p2/cmd", Payload: []byte("open"), QoS: 1},
				HasUser: true, Username: "p1dev", HasPass: true, Password: []byte("pw1")}},
		{name: "connect_v311_will_qos2_retain_empty_payload", version: v4,
			wire: "10 12 00 04 4D 51 54 54 04 34 FF FF 00 01 63 00 01 77 00 00",
			want: &packet.Connect{Version: 4, KeepAlive: 0xFFFF, ClientID: "c",
				HasWill: true, Will: packet.Will{Topic: "w", Payload: []byte{}, QoS: 2, Retain: true}}},

		// CONNECT 5.0
		{name: "connect_v5_user_password", version: v5, // C5(p1)
			wire: "10 1B 00 04 4D 51 54 54 05 C2 00 3C 00 00 02 70 31 00 05 70 31 64 65 76 00 03 70 77 31",
			want: &packet.Connect{Version: 5, CleanStart: true, KeepAlive: 60, ClientID: "p1",
				HasUser: true, Username: "p1dev", HasPass: true, Password: []byte("pw1")}},
		{name: "connect_v5_password_without_user", version: v5, // allowed in 5.0 (§3.1.2.9)
			wire: "10 14 00 04 4D 51 54 54 05 42 00 3C 00 00 02 70 31 00 03 70 77 31",
			want: &packet.Connect{Version: 5, CleanStart: true, KeepAlive: 60, ClientID: "p1",
				HasPass: true, Password: []byte("pw1")}},
		{name: "connect_v5_props", version: v5,
			wire: "10 35 00 04 4D 51 54 54 05 02 00 3C 26" +
				" 11 00 00 0E 10  15 00 03 74 6F 6B  16 00 02 01 02  17 00  19 01  21 00 14  22 00 0A  27 00 01 00 00" +
				" 26 00 01 6B 00 01 76  00 02 70 31",
			want: &packet.Connect{Version: 5, CleanStart: true, KeepAlive: 60, ClientID: "p1",
				Props: pr(packet.Properties{SessionExpiry: 3600, AuthMethod: "tok", AuthData: []byte{1, 2},
					RequestProblemInfo: 0, RequestResponseInfo: 1, ReceiveMaximum: 20, TopicAliasMaximum: 10,
					MaximumPacketSize: 65536, User: user("k", "v")},
					pSessExp, pAMethod, pAData, pRPI, pRRI, pRMax, pTAMax, pMaxPkt)}},
		{name: "connect_v5_will_props", version: v5,
			wire: "10 3C 00 04 4D 51 54 54 05 2E 00 3C 00 00 02 70 31 25" +
				" 01 01  02 00 00 00 3C  03 00 04 74 65 78 74  08 00 03 72 2F 31  09 00 02 AB CD  18 00 00 00 05" +
				" 26 00 01 61 00 01 62  00 01 77  00 02 62 79",
			want: &packet.Connect{Version: 5, CleanStart: true, KeepAlive: 60, ClientID: "p1", HasWill: true,
				Will: packet.Will{Topic: "w", Payload: []byte("by"), QoS: 1, Retain: true,
					Props: pr(packet.Properties{PayloadFormat: 1, MessageExpiry: 60, ContentType: "text",
						ResponseTopic: "r/1", CorrelationData: []byte{0xAB, 0xCD}, WillDelay: 5, User: user("a", "b")},
						pPFI, pExpiry, pCType, pRTopic, pCorr, pWDelay)}}},

		// CONNACK
		{name: "connack_v311_accepted", version: v4, wire: "20 02 00 00", want: &packet.Connack{}},
		{name: "connack_v311_session_present", version: v4, wire: "20 02 01 00",
			want: &packet.Connack{SessionPresent: true}},
		{name: "connack_v311_unacceptable_version", version: v4, wire: "20 02 00 01",
			want: &packet.Connack{Reason: packet.UnsupportedProtocolVersion}},
		{name: "connack_v311_not_authorized", version: v4, wire: "20 02 00 05",
			want: &packet.Connack{Reason: packet.NotAuthorized}},
		{name: "connack_v5_accepted", version: v5, wire: "20 03 00 00 00", want: &packet.Connack{}},
		{name: "connack_v5_unsupported_version", version: v5, wire: "20 03 00 84 00", // T14
			want: &packet.Connack{Reason: packet.UnsupportedProtocolVersion}},
		{name: "connack_v5_all_props", version: v5,
			wire: "20 46 01 00 43" +
				" 11 00 00 00 78  12 00 03 61 62 63  13 00 3C  15 00 03 74 6F 6B  16 00 01 FF" +
				" 1A 00 02 72 69  1C 00 02 73 72  1F 00 02 6F 6B  21 00 20  22 00 0A  24 01  25 00" +
				" 27 00 04 00 00  28 01  29 00  2A 01  26 00 01 6B 00 01 76",
			want: &packet.Connack{SessionPresent: true, Props: pr(packet.Properties{
				SessionExpiry: 120, AssignedClientID: "abc", ServerKeepAlive: 60, AuthMethod: "tok",
				AuthData: []byte{0xFF}, ResponseInfo: "ri", ServerReference: "sr", ReasonString: "ok",
				ReceiveMaximum: 32, TopicAliasMaximum: 10, MaximumQoS: 1, RetainAvailable: 0,
				MaximumPacketSize: 262144, WildcardSubAvailable: 1, SubIDAvailable: 0, SharedSubAvailable: 1,
				User: user("k", "v")},
				pSessExp, pACID, pSKA, pAMethod, pAData, pRInfo, pSRef, pReason, pRMax, pTAMax, pMaxQoS,
				pRetAv, pMaxPkt, pWildAv, pSubIDAv, pShareAv)}},

		// PUBLISH 3.1.1
		{name: "publish_v311_qos0", version: v4,
			wire: "30 0C 00 09 72 70 6D 2F 70 31 2F 68 72 78",
			want: &packet.Publish{Topic: "rpm/p1/hr", Payload: []byte("x")}},
		{name: "publish_v311_qos0_retain_empty_payload", version: v4,
			wire: "31 0B 00 09 72 70 6D 2F 70 31 2F 68 72",
			want: &packet.Publish{Retain: true, Topic: "rpm/p1/hr"}},
		{name: "publish_v311_qos1", version: v4,
			wire: "32 0E 00 09 72 70 6D 2F 70 31 2F 68 72 12 34 78",
			want: &packet.Publish{QoS: 1, Topic: "rpm/p1/hr", PacketID: 0x1234, Payload: []byte("x")}},
		{name: "publish_v311_qos2_dup_retain", version: v4,
			wire: "3D 0E 00 09 72 70 6D 2F 70 31 2F 68 72 00 07 78",
			want: &packet.Publish{Dup: true, QoS: 2, Retain: true, Topic: "rpm/p1/hr", PacketID: 7, Payload: []byte("x")}},
		{name: "publish_v311_qos1_dup", version: v4,
			wire: "3A 0E 00 09 72 70 6D 2F 70 31 2F 68 72 FF FF 78",
			want: &packet.Publish{Dup: true, QoS: 1, Topic: "rpm/p1/hr", PacketID: 0xFFFF, Payload: []byte("x")}},
		{name: "publish_v311_utf8_4byte_topic", version: v4, // T35 positive control
			wire: "30 0E 00 0B 72 70 6D 2F 70 31 2F F0 AA 9B 94 78",
			want: &packet.Publish{Topic: "rpm/p1/\U0002A6D4", Payload: []byte("x")}},
		{name: "publish_v311_two_byte_remaining_length", version: v4,
			wire: "30 CB 01 00 01 74" + strings.Repeat(" 61", 200),
			want: &packet.Publish{Topic: "t", Payload: bytes.Repeat([]byte("a"), 200)}},

		// PUBLISH 5.0
		{name: "publish_v5_qos0", version: v5,
			wire: "30 0D 00 09 72 70 6D 2F 70 31 2F 68 72 00 78",
			want: &packet.Publish{Topic: "rpm/p1/hr", Payload: []byte("x")}},
		{name: "publish_v5_qos1_all_props", version: v5,
			wire: "32 38 00 09 72 70 6D 2F 70 31 2F 68 72 12 34 28" +
				" 01 01  02 00 00 00 3C  03 00 04 74 65 78 74  08 00 03 72 2F 31  09 00 02 AB CD  23 00 05" +
				" 0B 07  0B 80 01  26 00 01 61 00 01 62  78 79",
			want: &packet.Publish{QoS: 1, Topic: "rpm/p1/hr", PacketID: 0x1234, Payload: []byte("xy"),
				Props: pr(packet.Properties{PayloadFormat: 1, MessageExpiry: 60, ContentType: "text",
					ResponseTopic: "r/1", CorrelationData: []byte{0xAB, 0xCD}, TopicAlias: 5,
					SubscriptionIDs: []uint32{7, 128}, User: user("a", "b")},
					pPFI, pExpiry, pCType, pRTopic, pCorr, pTAlias)}},
		{name: "publish_v5_qos2_dup_retain_alias_empty_topic", version: v5,
			wire: "3D 09 00 00 00 07 03 23 00 01 78",
			want: &packet.Publish{Dup: true, QoS: 2, Retain: true, PacketID: 7, Payload: []byte("x"),
				Props: pr(packet.Properties{TopicAlias: 1}, pTAlias)}},

		// PUBACK, PUBREC, PUBREL, PUBCOMP
		{name: "puback_v311", version: v4, wire: "40 02 00 01",
			want: &packet.Ack{Type: packet.PUBACK, PacketID: 1}},
		{name: "pubrec_v311", version: v4, wire: "50 02 00 02",
			want: &packet.Ack{Type: packet.PUBREC, PacketID: 2}},
		{name: "pubrel_v311", version: v4, wire: "62 02 00 03",
			want: &packet.Ack{Type: packet.PUBREL, PacketID: 3}},
		{name: "pubcomp_v311", version: v4, wire: "70 02 00 04",
			want: &packet.Ack{Type: packet.PUBCOMP, PacketID: 4}},
		{name: "puback_v5_short", version: v5, wire: "40 02 00 01",
			want: &packet.Ack{Type: packet.PUBACK, PacketID: 1}},
		{name: "pubrel_v5_short", version: v5, wire: "62 02 FF FF",
			want: &packet.Ack{Type: packet.PUBREL, PacketID: 0xFFFF}},
		{name: "puback_v5_reason", version: v5, wire: "40 03 00 01 10",
			want: &packet.Ack{Type: packet.PUBACK, PacketID: 1, Reason: packet.NoMatchingSubscribers}},
		{name: "pubrec_v5_reason_string", version: v5, wire: "50 0C 00 02 80 08 1F 00 05 65 72 72 6F 72",
			want: &packet.Ack{Type: packet.PUBREC, PacketID: 2, Reason: packet.UnspecifiedError,
				Props: pr(packet.Properties{ReasonString: "error"}, pReason)}},
		{name: "pubrel_v5_reason", version: v5, wire: "62 03 00 03 92",
			want: &packet.Ack{Type: packet.PUBREL, PacketID: 3, Reason: packet.PacketIdentifierNotFound}},
		{name: "pubcomp_v5_success_user_property", version: v5, wire: "70 0B 00 04 00 07 26 00 01 6B 00 01 76",
			want: &packet.Ack{Type: packet.PUBCOMP, PacketID: 4, Props: pr(packet.Properties{User: user("k", "v")})}},
		{name: "puback_v5_explicit_success", version: v5, wire: "40 03 00 01 00", decodeOnly: true,
			want: &packet.Ack{Type: packet.PUBACK, PacketID: 1}},
		{name: "puback_v5_explicit_success_empty_props", version: v5, wire: "40 04 00 01 00 00", decodeOnly: true,
			want: &packet.Ack{Type: packet.PUBACK, PacketID: 1}},
		{name: "pubrel_v5_reason_empty_props", version: v5, wire: "62 04 00 03 92 00", decodeOnly: true,
			want: &packet.Ack{Type: packet.PUBREL, PacketID: 3, Reason: packet.PacketIdentifierNotFound}},

		// SUBSCRIBE
		{name: "subscribe_v311", version: v4, wire: "82 0A 00 01 00 05 72 70 6D 2F 23 01", // SUB4(clin, rpm/#)
			want: &packet.Subscribe{PacketID: 1, Subs: []packet.Subscription{{Filter: "rpm/#", QoS: 1}}}},
		{name: "subscribe_v311_three_filters", version: v4, // T61
			wire: "82 26 12 34 00 09 64 72 61 73 68 2F 31 2F 23 00 00 09 65 72 61 73 68 2F 32 2F 23 01 00 09 63 72 61 73 68 2F 33 2F 23 02",
			want: &packet.Subscribe{PacketID: 0x1234, Subs: []packet.Subscription{
				{Filter: "drash/1/#"}, {Filter: "erash/2/#", QoS: 1}, {Filter: "crash/3/#", QoS: 2}}}},
		{name: "subscribe_v5", version: v5, wire: "82 0B 00 01 00 00 05 72 70 6D 2F 23 01", // SUB5(clin, rpm/#)
			want: &packet.Subscribe{PacketID: 1, Subs: []packet.Subscription{{Filter: "rpm/#", QoS: 1}}}},
		{name: "subscribe_v5_all_options", version: v5,
			wire: "82 25 00 0A 09 0B 2A 26 00 01 6B 00 01 76" +
				" 00 03 61 2F 2B 2E  00 03 62 2F 23 11  00 0A 24 73 68 61 72 65 2F 67 2F 63 00",
			want: &packet.Subscribe{PacketID: 10,
				Props: pr(packet.Properties{SubscriptionIDs: []uint32{42}, User: user("k", "v")}),
				Subs: []packet.Subscription{
					{Filter: "a/+", QoS: 2, NoLocal: true, RetainAsPublished: true, RetainHandling: 2},
					{Filter: "b/#", QoS: 1, RetainHandling: 1},
					{Filter: "$share/g/c"}}}},

		// SUBACK
		{name: "suback_v311", version: v4, wire: "90 03 00 01 01",
			want: &packet.SubAck{Type: packet.SUBACK, PacketID: 1, Reasons: []packet.ReasonCode{packet.GrantedQoS1}}},
		{name: "suback_v311_all_return_codes", version: v4, wire: "90 06 12 34 00 01 02 80",
			want: &packet.SubAck{Type: packet.SUBACK, PacketID: 0x1234, Reasons: []packet.ReasonCode{
				packet.Success, packet.GrantedQoS1, packet.GrantedQoS2, packet.UnspecifiedError}}},
		{name: "suback_v5", version: v5, wire: "90 04 00 01 00 01",
			want: &packet.SubAck{Type: packet.SUBACK, PacketID: 1, Reasons: []packet.ReasonCode{packet.GrantedQoS1}}},
		{name: "suback_v5_reason_string", version: v5,
			wire: "90 0E 00 02 09 1F 00 06 64 65 6E 69 65 64 87 00",
			want: &packet.SubAck{Type: packet.SUBACK, PacketID: 2, Props: pr(packet.Properties{ReasonString: "denied"}, pReason),
				Reasons: []packet.ReasonCode{packet.NotAuthorized, packet.Success}}},

		// UNSUBSCRIBE
		{name: "unsubscribe_v311", version: v4, wire: "A2 0D 12 34 00 09 64 72 61 73 68 2F 31 2F 23", // T61
			want: &packet.Unsubscribe{PacketID: 0x1234, Filters: []string{"drash/1/#"}}},
		{name: "unsubscribe_v311_two_filters", version: v4, wire: "A2 0A 00 05 00 01 61 00 03 62 2F 23",
			want: &packet.Unsubscribe{PacketID: 5, Filters: []string{"a", "b/#"}}},
		{name: "unsubscribe_v5_user_property", version: v5, wire: "A2 0F 00 05 07 26 00 01 6B 00 01 76 00 03 61 2F 62",
			want: &packet.Unsubscribe{PacketID: 5, Props: pr(packet.Properties{User: user("k", "v")}), Filters: []string{"a/b"}}},

		// UNSUBACK
		{name: "unsuback_v311", version: v4, wire: "B0 02 12 34",
			want: &packet.SubAck{Type: packet.UNSUBACK, PacketID: 0x1234}},
		{name: "unsuback_v5", version: v5, wire: "B0 05 00 05 00 00 11",
			want: &packet.SubAck{Type: packet.UNSUBACK, PacketID: 5,
				Reasons: []packet.ReasonCode{packet.Success, packet.NoSubscriptionExisted}}},

		// PINGREQ, PINGRESP
		{name: "pingreq_v311", version: v4, wire: "C0 00", want: &pingPacket{Type: packet.PINGREQ}},
		{name: "pingresp_v311", version: v4, wire: "D0 00", want: &pingPacket{Type: packet.PINGRESP}},
		{name: "pingreq_v5", version: v5, wire: "C0 00", want: &pingPacket{Type: packet.PINGREQ}},
		{name: "pingresp_v5", version: v5, wire: "D0 00", want: &pingPacket{Type: packet.PINGRESP}},

		// DISCONNECT
		{name: "disconnect_v311", version: v4, wire: "E0 00", want: &packet.Disconnect{Type: packet.DISCONNECT}},
		{name: "disconnect_v5_normal", version: v5, wire: "E0 00", want: &packet.Disconnect{Type: packet.DISCONNECT}},
		{name: "disconnect_v5_with_will", version: v5, wire: "E0 01 04",
			want: &packet.Disconnect{Type: packet.DISCONNECT, Reason: packet.DisconnectWithWill}},
		{name: "disconnect_v5_props", version: v5,
			wire: "E0 19 8B 17 11 00 00 00 00 1C 00 02 73 32 1F 00 03 62 79 65 26 00 01 6B 00 01 76",
			want: &packet.Disconnect{Type: packet.DISCONNECT, Reason: packet.ServerShuttingDown,
				Props: pr(packet.Properties{SessionExpiry: 0, ServerReference: "s2", ReasonString: "bye",
					User: user("k", "v")}, pSessExp, pSRef, pReason)}},
		{name: "disconnect_v5_explicit_normal", version: v5, wire: "E0 01 00", decodeOnly: true,
			want: &packet.Disconnect{Type: packet.DISCONNECT}},
		{name: "disconnect_v5_explicit_normal_empty_props", version: v5, wire: "E0 02 00 00", decodeOnly: true,
			want: &packet.Disconnect{Type: packet.DISCONNECT}},

		// AUTH (5.0 only)
		{name: "auth_v5_empty", version: v5, wire: "F0 00", want: &packet.Disconnect{Type: packet.AUTH}},
		{name: "auth_v5_continue", version: v5, wire: "F0 0D 18 0B 15 00 03 74 6F 6B 16 00 02 01 02",
			want: &packet.Disconnect{Type: packet.AUTH, Reason: packet.ContinueAuthentication,
				Props: pr(packet.Properties{AuthMethod: "tok", AuthData: []byte{1, 2}}, pAMethod, pAData)}},
		{name: "auth_v5_reauthenticate_reason_string", version: v5,
			wire: "F0 0F 19 0D 15 00 03 74 6F 6B 1F 00 04 6D 6F 72 65",
			want: &packet.Disconnect{Type: packet.AUTH, Reason: packet.ReAuthenticate,
				Props: pr(packet.Properties{AuthMethod: "tok", ReasonString: "more"}, pAMethod, pReason)}},
	}
}

// c5 builds a 5.0 CONNECT for ClientID p1, user p1dev, password pw1 (C5(p1)) with the given
// property section (hex, without its length).
func c5(props string) string {
	p := hx(props)
	body := append(hx("00 04 4D 51 54 54 05 C2 00 3C"), byte(len(p)))
	body = append(body, p...)
	body = append(body, hx("00 02 70 31 00 05 70 31 64 65 76 00 03 70 77 31")...)
	return spaced(append([]byte{0x10, byte(len(body))}, body...))
}

// p5 builds a 5.0 QoS 1 PUBLISH to rpm/p1/hr, id 1, payload "x", with the given property section.
func p5(props string) string {
	p := hx(props)
	body := append(hx("00 09 72 70 6D 2F 70 31 2F 68 72 00 01"), byte(len(p)))
	body = append(body, p...)
	body = append(body, 'x')
	return spaced(append([]byte{0x32, byte(len(body))}, body...))
}

// invalidCases are the rows that must be rejected, named after the clause they break.
func invalidCases() []codecCase {
	const malformed, protoErr = packet.MalformedPacket, packet.ProtocolError
	cs := []codecCase{
		// Fixed header and Variable Byte Integers.
		{name: "T01 [MQTT-1.5.5-1] 5-byte remaining length", version: v4, wire: "10 80 80 80 80 00", code: malformed, is: packet.ErrVarint},
		{name: "T01 [MQTT-1.5.5-1] 5-byte remaining length v5", version: v5, wire: "30 80 80 80 80 01", code: malformed, is: packet.ErrVarint},
		{name: "T03 [MQTT-1.5.5-1] remaining length above 268435455", version: v4, wire: "10 FF FF FF FF 7F", code: malformed, is: packet.ErrVarint},
		{name: "T01 [MQTT-1.5.5-1] 5-byte properties length in CONNECT", version: v5,
			wire: "10 13 00 04 4D 51 54 54 05 02 00 3C 80 80 80 80 00 00 02 70 31", code: malformed},
		{name: "[MQTT-1.5.5-1] 5-byte properties length in DISCONNECT", version: v5, wire: "E0 06 00 80 80 80 80 00", code: malformed},
		{name: "T55 [MQTT-1.5.5-1] 5-byte subscription identifier", version: v5,
			wire: "82 14 00 01 06 0B 80 80 80 80 01 00 08 72 70 6D 2F 70 31 2F 23 00", code: malformed},
		{name: "[MQTT-1.5.5-1] non-minimal remaining length 80 00", version: v5, wire: "C0 80 00", code: malformed},
		{name: "[MQTT-1.5.5-1] non-minimal remaining length FF 80 00", version: v5,
			wire: "30 FF 80 00 00 01 74 00" + strings.Repeat(" 61", 123), code: malformed},
		{name: "[MQTT-1.5.5-1] non-minimal properties length 80 00", version: v5, wire: "40 05 00 01 00 80 00", code: malformed},
		{name: "[MQTT-1.5.5-1] non-minimal property identifier 81 00", version: v5, wire: p5("81 00 01"), code: malformed},
		{name: "[MQTT-1.5.5-1] non-minimal subscription identifier 81 00", version: v5,
			wire: "82 0E 00 01 03 0B 81 00 00 05 72 70 6D 2F 23 00", code: malformed},
		{name: "T07 §2.1.2 reserved type 0 v311", version: v4, wire: "00 00", code: malformed},
		{name: "T08 §2.1.2 reserved type 0 v5", version: v5, wire: "00 00", code: malformed},
		{name: "T08 3.1.1 §2.2.1 AUTH in 3.1.1", version: v4, wire: "F0 00", code: malformed},
		{name: "3.1.1 §2.2.1 AUTH in 3.1", version: v3, wire: "F0 00", code: malformed},
		{name: "T09a [MQTT-3.8.1-1] SUBSCRIBE flags 0", version: v4, wire: "80 0D 00 09 00 08 72 70 6D 2F 70 31 2F 23 00", code: malformed},
		{name: "T09b [MQTT-3.6.1-1] PUBREL flags 0", version: v4, wire: "60 02 00 2A", code: malformed},
		{name: "T09b [MQTT-3.6.1-1] PUBREL flags 0 v5", version: v5, wire: "60 02 00 2A", code: malformed},
		{name: "T09c [MQTT-3.10.1-1] UNSUBSCRIBE flags 0", version: v4, wire: "A0 0C 00 01 00 08 72 70 6D 2F 70 31 2F 23", code: malformed},
		{name: "T09d [MQTT-2.1.3-1] CONNECT flags 1", version: v4,
			wire: "11 1A 00 04 4D 51 54 54 04 C2 00 3C 00 02 70 31 00 05 70 31 64 65 76 00 03 70 77 31", code: malformed},
		{name: "[MQTT-2.1.3-1] PUBACK flags 2", version: v4, wire: "42 02 00 01", code: malformed},
		{name: "[MQTT-2.1.3-1] CONNACK flags 1", version: v5, wire: "21 03 00 00 00", code: malformed},
		{name: "[MQTT-2.1.3-1] PINGREQ flags 8", version: v4, wire: "C8 00", code: malformed},
		{name: "[MQTT-2.1.3-1] DISCONNECT flags 1", version: v5, wire: "E1 00", code: malformed},
		{name: "[MQTT-2.1.3-1] AUTH flags 1", version: v5, wire: "F1 00", code: malformed},
		{name: "T32 [MQTT-3.3.1-4] PUBLISH QoS 3", version: v4, wire: "36 0E 00 09 72 70 6D 2F 70 31 2F 68 72 12 34 78", code: malformed},
		{name: "T32 [MQTT-3.3.1-4] PUBLISH QoS 3 dup retain v5", version: v5, wire: "3F 0F 00 09 72 70 6D 2F 70 31 2F 68 72 12 34 00 78", code: malformed},
		{name: "T38 [MQTT-3.3.1-2] DUP on QoS 0", version: v4, wire: "38 0C 00 09 72 70 6D 2F 70 31 2F 68 72 78", code: malformed},
		{name: "T38 [MQTT-3.3.1-2] DUP on QoS 0 v5", version: v5, wire: "39 0D 00 09 72 70 6D 2F 70 31 2F 68 72 00 78", code: malformed},

		// CONNECT
		{name: "T13 [MQTT-3.1.2-1] protocol name MQTU", version: v4,
			wire: "10 0E 00 04 4D 51 54 55 04 02 00 3C 00 02 70 31", code: malformed, is: packet.ErrProtocolName},
		{name: "[MQTT-3.1.2-1] protocol name mqtt lower case", version: v5,
			wire: "10 0F 00 04 6D 71 74 74 05 02 00 3C 00 00 02 70 31", code: malformed, is: packet.ErrProtocolName},
		{name: "[MQTT-3.1.2-1] empty protocol name", version: v4,
			wire: "10 0A 00 00 04 02 00 3C 00 02 70 31", code: malformed, is: packet.ErrProtocolName},
		{name: "T14 [MQTT-3.1.2-2] protocol level 6", version: v5,
			wire: "10 0E 00 04 4D 51 54 54 06 02 00 3C 00 02 70 31", code: packet.UnsupportedProtocolVersion, level: 6},
		{name: "T14 [MQTT-3.1.2-2] protocol level 2", version: v4,
			wire: "10 0E 00 04 4D 51 54 54 02 02 00 3C 00 02 70 31", code: packet.UnsupportedProtocolVersion, level: 2},
		{name: "[MQTT-3.1.2-2] protocol level 3 with name MQTT", version: v4,
			wire: "10 0E 00 04 4D 51 54 54 03 02 00 3C 00 02 70 31", code: packet.UnsupportedProtocolVersion, level: 3},
		{name: "[MQTT-3.1.2-2] protocol level 4 with name MQIsdp", version: v4,
			wire: "10 10 00 06 4D 51 49 73 64 70 04 02 00 3C 00 02 70 31", code: packet.UnsupportedProtocolVersion, level: 4},
		{name: "[MQTT-3.1.2-2] protocol level 255", version: v5,
			wire: "10 0E 00 04 4D 51 54 54 FF 02 00 3C 00 02 70 31", code: packet.UnsupportedProtocolVersion, level: 255},
		{name: "T15 [MQTT-3.1.2-3] reserved connect flag", version: v4,
			wire: "10 0E 00 04 4D 51 54 54 04 03 00 3C 00 02 70 31", code: malformed},
		{name: "T15 [MQTT-3.1.2-3] reserved connect flag v5", version: v5,
			wire: "10 0F 00 04 4D 51 54 54 05 03 00 3C 00 00 02 70 31", code: malformed},
		{name: "T16 3.1.1 [MQTT-3.1.2-22] password without user name", version: v4,
			wire: "10 13 00 04 4D 51 54 54 04 42 00 3C 00 02 70 31 00 03 70 77 31", code: malformed},
		{name: "T17a [MQTT-3.1.2-12] will QoS 3", version: v4,
			wire: "10 14 00 04 4D 51 54 54 04 1E 00 3C 00 02 70 31 00 01 77 00 01 78", code: malformed},
		{name: "T17b [MQTT-3.1.2-11] will QoS 1 without will flag", version: v4,
			wire: "10 0E 00 04 4D 51 54 54 04 0A 00 3C 00 02 70 31", code: malformed},
		{name: "[MQTT-3.1.2-11] will QoS 2 without will flag v5", version: v5,
			wire: "10 0F 00 04 4D 51 54 54 05 12 00 3C 00 00 02 70 31", code: malformed},
		{name: "[MQTT-3.1.2-13] will retain without will flag", version: v4,
			wire: "10 0E 00 04 4D 51 54 54 04 22 00 3C 00 02 70 31", code: malformed},
		{name: "T20 §2.2.2.2 unknown property 0x04 in CONNECT", version: v5,
			wire: "10 1D 00 04 4D 51 54 54 05 C2 00 3C 02 04 01 00 02 70 31 00 05 70 31 64 65 76 00 03 70 77 31", code: malformed},
		{name: "T20 §2.2.2.2 unknown property 0x00 in CONNECT", version: v5, wire: c5("00 01"), code: malformed},
		{name: "T20 §2.2.2.2 unknown property 0x7F in CONNECT", version: v5, wire: c5("7F 01"), code: malformed},
		{name: "T20 §2.2.2.2 two-byte property identifier 80 00", version: v5, wire: c5("80 00 01"), code: malformed},
		{name: "§2.2.2.2 two-byte property identifier 80 01 (0x80)", version: v5, wire: c5("80 01 01"), code: malformed},
		{name: "§2.2.2.2 property identifier FF FF FF 7F", version: v5, wire: c5("FF FF FF 7F"), code: malformed},
		{name: "§3.1.2.11 Will Delay in CONNECT properties", version: v5, wire: c5("18 00 00 00 05"), code: malformed},
		{name: "§3.1.2.11 Topic Alias in CONNECT properties", version: v5, wire: c5("23 00 01"), code: malformed},
		{name: "§3.1.3.2 Session Expiry in will properties", version: v5,
			wire: "10 1B 00 04 4D 51 54 54 05 06 00 3C 00 00 02 70 31 05 11 00 00 00 0A 00 01 77 00 01 78", code: malformed},
		{name: "§3.1.3.2 Subscription Identifier in will properties", version: v5,
			wire: "10 18 00 04 4D 51 54 54 05 06 00 3C 00 00 02 70 31 02 0B 01 00 01 77 00 01 78", code: malformed},
		{name: "§3.1.3.2 duplicate Will Delay in will properties", version: v5,
			wire: "10 20 00 04 4D 51 54 54 05 06 00 3C 00 00 02 70 31 0A 18 00 00 00 01 18 00 00 00 02 00 01 77 00 01 78", code: protoErr},
		{name: "§2.2.2.2 duplicate Session Expiry in CONNECT", version: v5, wire: c5("11 00 00 00 01 11 00 00 00 02"), code: protoErr},
		{name: "§3.1.2.11.3 duplicate Receive Maximum", version: v5, wire: c5("21 00 01 21 00 01"), code: protoErr},
		{name: "T21a §3.1.2.11.3 Receive Maximum 0", version: v5,
			wire: "10 1E 00 04 4D 51 54 54 05 C2 00 3C 03 21 00 00 00 02 70 31 00 05 70 31 64 65 76 00 03 70 77 31", code: protoErr},
		{name: "T21b §3.1.2.11.4 Maximum Packet Size 0", version: v5,
			wire: "10 20 00 04 4D 51 54 54 05 C2 00 3C 05 27 00 00 00 00 00 02 70 31 00 05 70 31 64 65 76 00 03 70 77 31", code: protoErr},
		{name: "T21c §3.1.2.11.6 Request Response Information 2", version: v5, wire: c5("19 02"), code: protoErr},
		{name: "§3.1.2.11.7 Request Problem Information 2", version: v5, wire: c5("17 02"), code: protoErr},
		{name: "§3.1.2.11 Receive Maximum value truncated", version: v5, wire: c5("21 00"), code: malformed},
		{name: "§3.1.2.11 user property value truncated", version: v5, wire: c5("26 00 01 6B 00 05 76"), code: malformed},
		{name: "§3.1.2.11.10 Authentication Data without Authentication Method", version: v5, wire: c5("16 00 01 01"), code: protoErr},
		{name: "[MQTT-1.5.4-2] client identifier with U+0000", version: v4,
			wire: "10 0E 00 04 4D 51 54 54 04 02 00 3C 00 02 70 00", code: malformed},
		{name: "[MQTT-1.5.4-2] client identifier with U+0000 after a multibyte character", version: v4,
			wire: "10 10 00 04 4D 51 54 54 04 02 00 3C 00 04 C3 A9 00 61", code: malformed},
		{name: "[MQTT-1.5.4-1] client identifier with surrogate ED A0 80", version: v4,
			wire: "10 0F 00 04 4D 51 54 54 04 02 00 3C 00 03 ED A0 80", code: malformed},
		{name: "[MQTT-1.5.4-1] client identifier with overlong C0 AF", version: v4,
			wire: "10 0E 00 04 4D 51 54 54 04 02 00 3C 00 02 C0 AF", code: malformed},
		{name: "[MQTT-1.5.4-1] client identifier with truncated multibyte E2 82", version: v4,
			wire: "10 0F 00 04 4D 51 54 54 04 02 00 3C 00 03 70 E2 82", code: malformed},
		{name: "[MQTT-1.5.4-1] user name with surrogate", version: v4,
			wire: "10 14 00 04 4D 51 54 54 04 82 00 3C 00 02 70 31 00 04 61 ED B0 80", code: malformed},
		{name: "[MQTT-1.5.4-1] will topic with overlong", version: v4,
			wire: "10 14 00 04 4D 51 54 54 04 06 00 3C 00 02 70 31 00 02 C0 AF 00 00", code: malformed},
		{name: "[MQTT-1.5.4-1] user property with invalid UTF-8 FF", version: v5, wire: c5("26 00 01 FF 00 00"), code: malformed},
		{name: "[MQTT-3.1.2-1] trailing bytes after CONNECT", version: v4,
			wire: "10 0F 00 04 4D 51 54 54 04 02 00 3C 00 02 70 31 FF", code: malformed},
		{name: "[MQTT-3.1.2-1] trailing bytes after CONNECT password", version: v5,
			wire: "10 1C 00 04 4D 51 54 54 05 C2 00 3C 00 00 02 70 31 00 05 70 31 64 65 76 00 03 70 77 31 00", code: malformed},
		{name: "§3.1 CONNECT with user flag but no user name", version: v4,
			wire: "10 0E 00 04 4D 51 54 54 04 82 00 3C 00 02 70 31", code: malformed},

		// CONNACK
		{name: "[MQTT-3.2.2-1] CONNACK reserved acknowledge flags", version: v4, wire: "20 02 02 00", code: malformed},
		{name: "§3.2 trailing bytes after CONNACK", version: v4, wire: "20 03 00 00 00", code: malformed},
		{name: "§3.2 CONNACK without return code", version: v4, wire: "20 01 00", code: malformed},
		{name: "§3.2.2.3.4 Maximum QoS 2", version: v5, wire: "20 05 00 00 02 24 02", code: protoErr},
		{name: "§3.2.2.3.5 Retain Available 2", version: v5, wire: "20 05 00 00 02 25 02", code: protoErr},
		{name: "§3.2.2.3.11 Wildcard Subscription Available 2", version: v5, wire: "20 05 00 00 02 28 02", code: protoErr},
		{name: "§3.2.2.3.12 Subscription Identifiers Available 2", version: v5, wire: "20 05 00 00 02 29 02", code: protoErr},
		{name: "§3.2.2.3.13 Shared Subscription Available 2", version: v5, wire: "20 05 00 00 02 2A 02", code: protoErr},
		{name: "§3.2.2.3 Request Problem Information in CONNACK", version: v5, wire: "20 05 00 00 02 17 01", code: malformed},
		{name: "§3.2.2.3 Will Delay in CONNACK", version: v5, wire: "20 08 00 00 05 18 00 00 00 01", code: malformed},

		// PUBLISH
		{name: "T35 [MQTT-1.5.4-1] topic with surrogate", version: v4, wire: "30 0D 00 0A 72 70 6D 2F 70 31 2F ED A0 80 78", code: malformed},
		{name: "T35 [MQTT-1.5.4-1] topic with overlong slash", version: v4, wire: "30 0C 00 09 72 70 6D 2F 70 31 2F C0 AF 78", code: malformed},
		{name: "[MQTT-1.5.4-1] topic with truncated multibyte", version: v5, wire: "30 0A 00 07 72 70 6D 2F 70 31 E2 00", code: malformed},
		{name: "[MQTT-1.5.4-2] topic with U+0000", version: v4, wire: "30 06 00 03 61 00 62 78", code: malformed},
		{name: "§3.3.2.1 topic length beyond the packet", version: v4, wire: "30 04 00 09 72 70", code: malformed},
		{name: "T37 [MQTT-2.2.1-3] PUBLISH QoS 1 packet id 0", version: v4, wire: "32 0E 00 09 72 70 6D 2F 70 31 2F 68 72 00 00 78", code: protoErr},
		{name: "T37 [MQTT-2.2.1-3] PUBLISH QoS 2 packet id 0 v5", version: v5, wire: "34 0F 00 09 72 70 6D 2F 70 31 2F 68 72 00 00 00 78", code: protoErr},
		{name: "§3.3.2.2 PUBLISH QoS 1 packet id truncated", version: v4, wire: "32 04 00 01 74 00", code: malformed},
		{name: "T41 §2.2.2.2 Server Reference in PUBLISH", version: v5,
			wire: "32 16 00 09 72 70 6D 2F 70 31 2F 68 72 00 01 07 1C 00 04 65 76 69 6C 78", code: malformed},
		{name: "T41 §2.2.2.2 unknown property 0x7F in PUBLISH", version: v5,
			wire: "32 11 00 09 72 70 6D 2F 70 31 2F 68 72 00 01 02 7F 00 78", code: malformed},
		{name: "§2.2.2.2 Session Expiry in PUBLISH", version: v5, wire: p5("11 00 00 00 01"), code: malformed},
		{name: "§2.2.2.2 Will Delay in PUBLISH", version: v5, wire: p5("18 00 00 00 01"), code: malformed},
		{name: "T43 §3.3.2.3.2 Payload Format Indicator 2", version: v5,
			wire: "32 11 00 09 72 70 6D 2F 70 31 2F 68 72 00 01 02 01 02 78", code: protoErr},
		{name: "§3.3.2.3.8 Subscription Identifier 0 in PUBLISH", version: v5, wire: p5("0B 00"), code: protoErr},
		{name: "§2.2.2.2 duplicate Topic Alias in PUBLISH", version: v5, wire: p5("23 00 01 23 00 02"), code: protoErr},
		{name: "§2.2.2.2 duplicate Content Type in PUBLISH", version: v5, wire: p5("03 00 01 61 03 00 01 62"), code: protoErr},
		{name: "§2.2.2.2 duplicate Payload Format Indicator in PUBLISH", version: v5, wire: p5("01 00 01 01"), code: protoErr},
		{name: "[MQTT-1.5.4-1] Response Topic with surrogate", version: v5, wire: p5("08 00 03 ED A0 80"), code: malformed},
		{name: "§3.3.2.3 Message Expiry truncated", version: v5, wire: p5("02 00 00"), code: malformed},
		{name: "§3.3.2.3 properties length beyond the packet", version: v5, wire: "30 05 00 01 74 05 01", code: malformed},

		// PUBACK, PUBREC, PUBREL, PUBCOMP
		{name: "[MQTT-2.2.1-3] PUBACK packet id 0", version: v4, wire: "40 02 00 00", code: protoErr},
		{name: "[MQTT-2.2.1-3] PUBACK packet id 0 v5", version: v5, wire: "40 03 00 00 10", code: protoErr},
		{name: "[MQTT-2.2.1-3] PUBREL packet id 0", version: v4, wire: "62 02 00 00", code: protoErr},
		{name: "§3.4.2 PUBACK packet id truncated", version: v4, wire: "40 01 00", code: malformed},
		{name: "§3.4 trailing bytes after PUBACK v311", version: v4, wire: "40 03 00 01 00", code: malformed},
		{name: "§3.5 trailing bytes after PUBREC v311", version: v4, wire: "50 04 00 01 00 00", code: malformed},
		{name: "§3.4 trailing bytes after PUBACK properties v5", version: v5, wire: "40 05 00 01 00 00 FF", code: malformed},
		{name: "§3.4.2.2 Server Reference in PUBREC", version: v5, wire: "50 09 00 01 00 05 1C 00 02 61 62", code: malformed},
		{name: "§3.4.2.2 Topic Alias in PUBACK", version: v5, wire: "40 07 00 01 00 03 23 00 01", code: malformed},
		{name: "§3.4.2.2 duplicate Reason String in PUBACK", version: v5, wire: "40 0C 00 01 00 08 1F 00 01 61 1F 00 01 62", code: protoErr},
		{name: "§3.4.2.2 PUBACK properties length beyond the packet", version: v5, wire: "40 04 00 01 00 01", code: malformed},

		// SUBSCRIBE
		{name: "T57 [MQTT-2.2.1-3] SUBSCRIBE packet id 0", version: v4, wire: "82 0D 00 00 00 08 72 70 6D 2F 70 31 2F 23 00", code: protoErr},
		{name: "T57 [MQTT-3.8.3-2] SUBSCRIBE without filters", version: v4, wire: "82 02 00 0C", code: protoErr},
		{name: "[MQTT-3.8.3-2] SUBSCRIBE without filters v5", version: v5, wire: "82 03 00 0C 00", code: protoErr},
		{name: "[MQTT-3.8.3-2] SUBSCRIBE without filters v5 with properties", version: v5, wire: "82 05 00 0C 02 0B 01", code: protoErr},
		{name: "T55 §3.8.2.1.2 Subscription Identifier 0", version: v5,
			wire: "82 10 00 01 02 0B 00 00 08 72 70 6D 2F 70 31 2F 23 00", code: protoErr},
		{name: "T55 §3.8.2.1.2 Subscription Identifier twice", version: v5,
			wire: "82 12 00 01 04 0B 01 0B 01 00 08 72 70 6D 2F 70 31 2F 23 00", code: protoErr},
		{name: "§3.8.2.1 Topic Alias in SUBSCRIBE", version: v5, wire: "82 0C 00 01 03 23 00 01 00 03 61 2F 62 00", code: malformed},
		{name: "T56 3.1.1 [MQTT-3.8.3-4] subscription QoS 3", version: v4, wire: "82 0D 00 08 00 08 72 70 6D 2F 70 31 2F 23 03", code: malformed},
		{name: "[MQTT-3.8.3-4] subscription QoS 3 v5", version: v5, wire: "82 0E 00 08 00 00 08 72 70 6D 2F 70 31 2F 23 03", code: malformed},
		{name: "T56 [MQTT-3.8.3-5] reserved option bit 6", version: v5, wire: "82 0E 00 07 00 00 08 72 70 6D 2F 70 31 2F 23 40", code: malformed},
		{name: "[MQTT-3.8.3-5] reserved option bit 7", version: v5, wire: "82 0E 00 07 00 00 08 72 70 6D 2F 70 31 2F 23 80", code: malformed},
		{name: "T56 §3.8.3.1 Retain Handling 3", version: v5, wire: "82 0E 00 06 00 00 08 72 70 6D 2F 70 31 2F 23 30", code: malformed},
		{name: "[MQTT-3.8.3-5] second filter with reserved bits", version: v5, wire: "82 0B 00 06 00 00 01 61 00 00 01 62 C1", code: malformed},
		{name: "§3.8.3 subscription options missing", version: v4, wire: "82 09 00 01 00 05 72 70 6D 2F 23", code: malformed},
		{name: "[MQTT-1.5.4-2] topic filter with U+0000", version: v5, wire: "82 09 00 01 00 00 03 61 00 62 00", code: malformed},
		{name: "[MQTT-1.5.4-1] topic filter with overlong", version: v4, wire: "82 07 00 01 00 02 C0 AF 00", code: malformed},

		// SUBACK, UNSUBACK
		{name: "§3.9.2 SUBACK packet id truncated", version: v4, wire: "90 01 00", code: malformed},
		{name: "§3.9.2.1 Topic Alias in SUBACK", version: v5, wire: "90 07 00 01 03 23 00 01 00", code: malformed},
		{name: "§3.11.2.1 Subscription Identifier in UNSUBACK", version: v5, wire: "B0 06 00 01 02 0B 01 00", code: malformed},
		{name: "3.1.1 [MQTT-3.9.3-2] SUBACK reserved return code 0x03", version: v4, wire: "90 03 00 01 03", code: malformed},
		{name: "3.1.1 §3.11.1 UNSUBACK with a payload", version: v4, wire: "B0 03 00 01 00", code: malformed},

		// UNSUBSCRIBE
		{name: "[MQTT-2.2.1-3] UNSUBSCRIBE packet id 0", version: v4, wire: "A2 05 00 00 00 01 61", code: protoErr},
		{name: "[MQTT-3.10.3-2] UNSUBSCRIBE without filters", version: v4, wire: "A2 02 00 01", code: protoErr},
		{name: "[MQTT-3.10.3-2] UNSUBSCRIBE without filters v5", version: v5, wire: "A2 03 00 01 00", code: protoErr},
		{name: "§3.10.2.1 Subscription Identifier in UNSUBSCRIBE", version: v5, wire: "A2 08 00 01 02 0B 01 00 01 61", code: malformed},
		{name: "[MQTT-1.5.4-1] UNSUBSCRIBE filter with surrogate", version: v4, wire: "A2 07 00 01 00 03 ED A0 80", code: malformed},
		{name: "§3.10.3 UNSUBSCRIBE filter truncated", version: v4, wire: "A2 05 00 01 00 05 61", code: malformed},

		// PINGREQ / PINGRESP / DISCONNECT / AUTH
		{name: "3.1.1 §3.14.1 trailing bytes after DISCONNECT", version: v4, wire: "E0 01 00", code: malformed},
		{name: "§3.14 trailing bytes after DISCONNECT properties", version: v5, wire: "E0 03 00 00 FF", code: malformed},
		{name: "§3.14.2.2 Topic Alias in DISCONNECT", version: v5, wire: "E0 05 00 03 23 00 01", code: malformed},
		{name: "§3.14.2.2 duplicate Session Expiry in DISCONNECT", version: v5, wire: "E0 0C 00 0A 11 00 00 00 01 11 00 00 00 02", code: protoErr},
		{name: "§3.14.2.2 DISCONNECT properties length beyond the packet", version: v5, wire: "E0 02 00 05", code: malformed},
		{name: "§3.15.2.2 Session Expiry in AUTH", version: v5, wire: "F0 07 18 05 11 00 00 00 01", code: malformed},
		{name: "§3.15.2.2 duplicate Authentication Method in AUTH", version: v5,
			wire: "F0 0E 18 0C 15 00 03 74 6F 6B 15 00 03 74 6F 6B", code: protoErr},
	}
	// 3.1.1 [MQTT-3.8.3-4]: the upper six bits of the subscription options are reserved.
	for bit := 2; bit < 8; bit++ {
		opts := byte(1) << bit
		cs = append(cs, codecCase{
			name:    "3.1.1 [MQTT-3.8.3-4] subscription options bit " + string(rune('0'+bit)),
			version: v4, wire: "82 08 00 01 00 03 61 2F 62 " + spaced([]byte{opts}), code: malformed,
		})
	}
	return cs
}

func allCases() []codecCase { return append(validCases(), invalidCases()...) }

func TestDecodeTable(t *testing.T) {
	for _, c := range allCases() {
		t.Run(c.name, func(t *testing.T) {
			wire := hx(c.wire)
			got, err := decodePacket(wire, c.version)
			if errors.Is(err, errTrailingPacket) {
				t.Fatalf("broken row: %x holds more than one packet", wire)
			}
			if c.want != nil {
				if err != nil {
					t.Fatalf("decode(%x) error %v, want %+v", wire, err, c.want)
				}
				if diff := cmp.Diff(c.want, got, cmpOpts...); diff != "" {
					t.Errorf("decode(%x) mismatch (-want +got):\n%s", wire, diff)
				}
				return
			}
			if err == nil {
				t.Errorf("decode(%x) = %+v, want error %v", wire, got, c.code)
				return
			}
			rc, ok := reasonOf(err)
			if !ok || rc != c.code {
				t.Errorf("decode(%x) error %v (reason %v), want reason %v", wire, err, rc, c.code)
				return
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("decode(%x) error %v, want errors.Is %v", wire, err, c.is)
			}
			if c.level != 0 {
				conn, ok := got.(*packet.Connect)
				if !ok || conn.Version != c.level {
					t.Errorf("DecodeConnect(%x) left %+v, want Connect.Version %d", wire, got, c.level)
				}
			}
		})
	}
}

func TestEncodeTable(t *testing.T) {
	for _, c := range validCases() {
		if c.decodeOnly {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			wire := hx(c.wire)
			if got := encode(nil, c.want, c.version); !bytes.Equal(got, wire) {
				t.Errorf("encode(%+v) =\n%s\nwant\n%s", c.want, spaced(got), spaced(wire))
			}
			// Appending to a non-empty slice must leave the prefix alone.
			prefix := []byte{0xAA, 0xBB}
			if got := encode(prefix[:2:2], c.want, c.version); !bytes.Equal(got, append(prefix, wire...)) {
				t.Errorf("encode after prefix = %x, want %x%x", got, prefix, wire)
			}
		})
	}
}

// TestDecodeOnlyRowsEncodeCanonically checks that the non-canonical rows re-encode to the
// canonical form, which decodes to the same packet.
func TestDecodeOnlyRowsEncodeCanonically(t *testing.T) {
	for _, c := range validCases() {
		if !c.decodeOnly {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			enc := encode(nil, c.want, c.version)
			if len(enc) >= len(hx(c.wire)) {
				t.Errorf("encode(%+v) = %x, want a form shorter than the non-canonical %s", c.want, enc, c.wire)
			}
			got, err := decodePacket(enc, c.version)
			if err != nil {
				t.Fatalf("decode(%x) error %v", enc, err)
			}
			if diff := cmp.Diff(c.want, got, cmpOpts...); diff != "" {
				t.Errorf("decode(encode) mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// goldenFormat writes b as lines of 16 upper-case hex bytes.
func goldenFormat(b []byte) []byte {
	var sb strings.Builder
	for len(b) > 0 {
		n := min(16, len(b))
		sb.WriteString(spaced(b[:n]))
		sb.WriteByte('\n')
		b = b[n:]
	}
	return []byte(sb.String())
}

func TestGoldenWire(t *testing.T) {
	for _, c := range validCases() {
		if c.decodeOnly {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join("testdata", c.name+".golden")
			got := goldenFormat(encode(nil, c.want, c.version))
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/packet -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("encoder output differs from %s:\ngot\n%swant\n%s", path, got, want)
			}
			// The golden file decodes back to the row's packet.
			dec, err := decodePacket(hx(string(want)), c.version)
			if err != nil {
				t.Fatalf("decode(%s) error %v", path, err)
			}
			if diff := cmp.Diff(c.want, dec, cmpOpts...); diff != "" {
				t.Errorf("decode(%s) mismatch (-want +got):\n%s", path, diff)
			}
		})
	}
}

// TestGoldenFilesHaveRows catches golden files left behind by renamed or deleted rows.
func TestGoldenFilesHaveRows(t *testing.T) {
	names := map[string]bool{}
	for _, c := range validCases() {
		if !c.decodeOnly {
			names[c.name+".golden"] = true
		}
	}
	files, err := filepath.Glob(filepath.Join("testdata", "*.golden"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !names[filepath.Base(f)] {
			t.Errorf("%s has no row in validCases", f)
		}
	}
}

func TestCaseNamesUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range allCases() {
		if seen[c.name] {
			t.Errorf("duplicate row name %q", c.name)
		}
		seen[c.name] = true
	}
}

// TestTruncatedPacketsRejected feeds every proper prefix of every valid row through the
// whole pipeline (ReadHeader, Validate, body length, typed decoder): each must be an error.
func TestTruncatedPacketsRejected(t *testing.T) {
	for _, c := range validCases() {
		wire := hx(c.wire)
		for n := 0; n < len(wire); n++ {
			got, err := decodePacket(wire[:n], c.version)
			if err == nil {
				t.Errorf("%s: decode(%x) = %+v, want error for a truncated packet", c.name, wire[:n], got)
			}
		}
	}
}

// TestTruncatedBodiesRejected hands every proper prefix of every valid body straight to the
// typed decoder, as if the Remaining Length had announced that size. It must never panic.
// Packets whose every prefix is malformed must be rejected; for the others (a shorter payload,
// fewer filters, an omitted reason code) a prefix that decodes must re-encode to itself or to
// a packet that decodes to the same value.
func TestTruncatedBodiesRejected(t *testing.T) {
	for _, c := range validCases() {
		h, body, err := splitPacket(hx(c.wire), c.version)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		strict := h.Type == packet.CONNECT || h.Type == packet.CONNACK ||
			(c.version < v5 && h.Type >= packet.PUBACK && h.Type <= packet.PUBCOMP)
		for n := 0; n < len(body); n++ {
			prefix := body[:n:n]
			got, err := decodeBody(h, prefix, c.version)
			if err != nil {
				continue
			}
			if strict {
				t.Errorf("%s: decode body %x = %+v, want error", c.name, prefix, got)
				continue
			}
			again, err := decodePacket(encode(nil, got, c.version), c.version)
			if err != nil {
				t.Errorf("%s: body %x decoded to %+v whose encoding is rejected: %v", c.name, prefix, got, err)
				continue
			}
			if diff := cmp.Diff(got, again, cmpOpts...); diff != "" {
				t.Errorf("%s: body %x round trip mismatch (-first +second):\n%s", c.name, prefix, diff)
			}
		}
	}
}
