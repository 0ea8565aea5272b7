#include "proxy/wire/codec.h"

#include <gtest/gtest.h>

namespace arbor::proxy::wire {
namespace {

std::string Int32(uint32_t v) {
  std::string s(4, '\0');
  s[0] = static_cast<char>(v >> 24);
  s[1] = static_cast<char>(v >> 16);
  s[2] = static_cast<char>(v >> 8);
  s[3] = static_cast<char>(v);
  return s;
}

TEST(WireCodec, StartupRoundTrip) {
  StartupPacket p;
  p.params = {{"user", "alice"}, {"database", "app"}, {"options", "-c endpoint=default/main"}};
  std::string bytes = SerializeStartup(p);
  auto len = ParseStartupLength(std::string_view(bytes).substr(0, 4));
  ASSERT_TRUE(len.ok());
  EXPECT_EQ(*len, bytes.size());
  auto back = ParseStartup(bytes);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->kind, StartupKind::kStartup);
  EXPECT_EQ(back->params, p.params);
  EXPECT_EQ(back->Param("database"), "app");
  EXPECT_FALSE(back->Param("nope"));
}

TEST(WireCodec, SpecialStartupCodes) {
  for (auto kind : {StartupKind::kSslRequest, StartupKind::kGssEncRequest}) {
    StartupPacket p;
    p.kind = kind;
    auto back = ParseStartup(SerializeStartup(p));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(back->kind, kind);
  }
  EXPECT_EQ(SerializeStartup([] {
              StartupPacket p;
              p.kind = StartupKind::kSslRequest;
              return p;
            }()),
            Int32(8) + Int32(80877103));
  auto cancel = ParseStartup(SerializeCancelRequest({0x01020304, 0xfffffffe}));
  ASSERT_TRUE(cancel.ok());
  EXPECT_EQ(cancel->kind, StartupKind::kCancel);
  EXPECT_EQ(cancel->cancel_pid, 0x01020304u);
  EXPECT_EQ(cancel->cancel_secret, 0xfffffffeu);
}

TEST(WireCodec, StartupRejectsGarbage) {
  // Lengths below the minimum and above the limit.
  EXPECT_FALSE(ParseStartupLength(Int32(0)).ok());
  EXPECT_FALSE(ParseStartupLength(Int32(7)).ok());
  EXPECT_FALSE(ParseStartupLength(Int32(10001)).ok());
  EXPECT_FALSE(ParseStartupLength(Int32(0xffffffff)).ok());
  EXPECT_TRUE(ParseStartupLength(Int32(8192)).ok());
  EXPECT_FALSE(ParseStartupLength(Int32(8193)).ok());
  EXPECT_FALSE(ParseStartupLength("abc").ok());
  // An HTTP request sent to the proxy.
  EXPECT_FALSE(ParseStartup("GET / HTTP/1.1\r\nHost: x\r\n\r\n").ok());
  // Truncated: declared length larger than the buffer, and every prefix of a valid packet.
  StartupPacket p;
  p.params = {{"user", "alice"}};
  std::string good = SerializeStartup(p);
  for (size_t i = 0; i < good.size(); ++i) {
    EXPECT_FALSE(ParseStartup(good.substr(0, i)).ok()) << i;
  }
  // Missing the final NUL, a name with no value, trailing bytes, duplicate params.
  std::string body = Int32(kProtocolV3) + std::string("user\0alice\0", 11);
  EXPECT_FALSE(ParseStartup(Int32(body.size() + 4) + body).ok());
  body = Int32(kProtocolV3) + std::string("user\0alice\0db\0\0", 15);
  EXPECT_FALSE(ParseStartup(Int32(body.size() + 4) + body).ok());
  body = Int32(kProtocolV3) + std::string("user\0alice\0\0xx", 14);
  EXPECT_FALSE(ParseStartup(Int32(body.size() + 4) + body).ok());
  body = Int32(kProtocolV3) + std::string("user\0a\0user\0b\0\0", 15);
  EXPECT_FALSE(ParseStartup(Int32(body.size() + 4) + body).ok());
  // No user; protocol 2.0; SSLRequest with trailing bytes; short cancel.
  body = Int32(kProtocolV3) + std::string("database\0x\0\0", 12);
  EXPECT_FALSE(ParseStartup(Int32(body.size() + 4) + body).ok());
  body = Int32(0x00020000) + std::string("user\0a\0\0", 8);
  EXPECT_FALSE(ParseStartup(Int32(body.size() + 4) + body).ok());
  EXPECT_FALSE(ParseStartup(Int32(12) + Int32(kSslRequestCode) + Int32(0)).ok());
  EXPECT_FALSE(ParseStartup(Int32(12) + Int32(kCancelRequestCode) + Int32(1)).ok());
}

TEST(WireCodec, MessageFraming) {
  std::string buf = SerializeMessage('Z', "I") + SerializeMessage('S', std::string("a\0b\0", 4));
  auto m1 = TakeMessage(buf, kMaxAuthMessageLength);
  ASSERT_TRUE(m1.ok());
  ASSERT_TRUE(m1->has_value());
  EXPECT_EQ((*m1)->type, 'Z');
  EXPECT_EQ(*ParseReadyForQuery(**m1), 'I');
  // A partial message stays in the buffer until complete.
  std::string rest = buf;
  std::string partial = rest.substr(0, rest.size() - 1);
  auto none = TakeMessage(partial, kMaxAuthMessageLength);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  EXPECT_EQ(partial.size(), rest.size() - 1);
  auto m2 = TakeMessage(buf, kMaxAuthMessageLength);
  ASSERT_TRUE(m2.ok() && m2->has_value());
  auto ps = ParseParameterStatus(**m2);
  ASSERT_TRUE(ps.ok());
  EXPECT_EQ(ps->first, "a");
  EXPECT_EQ(ps->second, "b");
  EXPECT_TRUE(buf.empty());
}

TEST(WireCodec, MessageRejectsOversizedAndShortLengths) {
  std::string oversized = "p" + Int32(kMaxAuthMessageLength + 5);
  EXPECT_FALSE(TakeMessage(oversized, kMaxAuthMessageLength).ok());
  std::string short_len = "p" + Int32(3);
  EXPECT_FALSE(TakeMessage(short_len, kMaxAuthMessageLength).ok());
  std::string huge = "p" + Int32(0xffffffff);
  EXPECT_FALSE(TakeMessage(huge, kMaxAuthMessageLength).ok());
  EXPECT_FALSE(ParseMessageHeader("p", 10).ok());
}

TEST(WireCodec, AuthRoundTrip) {
  AuthRequest sasl;
  sasl.code = AuthCode::kSasl;
  sasl.sasl_mechanisms = {"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"};
  auto back = ParseAuth(SerializeAuth(sasl));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->code, AuthCode::kSasl);
  EXPECT_EQ(back->sasl_mechanisms, sasl.sasl_mechanisms);

  AuthRequest cont;
  cont.code = AuthCode::kSaslContinue;
  cont.data = "r=abc,s=xyz,i=4096";
  back = ParseAuth(SerializeAuth(cont));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->data, cont.data);

  back = ParseAuth(SerializeAuth(AuthRequest{}));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->code, AuthCode::kOk);
}

TEST(WireCodec, AuthRejectsGarbageAndOutOfOrder) {
  EXPECT_FALSE(ParseAuth({'R', ""}).ok());
  EXPECT_FALSE(ParseAuth({'R', Int32(99)}).ok());
  EXPECT_FALSE(ParseAuth({'R', Int32(0) + "x"}).ok());
  EXPECT_FALSE(ParseAuth({'R', Int32(5) + "ab"}).ok());
  EXPECT_FALSE(ParseAuth({'R', Int32(10) + std::string("SCRAM", 5)}).ok());
  EXPECT_FALSE(ParseAuth({'R', Int32(10) + std::string("\0", 1)}).ok());
  // Out of order: a ReadyForQuery where an Authentication request is expected.
  EXPECT_FALSE(ParseAuth({'Z', "I"}).ok());
  EXPECT_FALSE(ParseBackendKeyData({'Z', "I"}).ok());
  EXPECT_FALSE(ParseReadyForQuery({'K', "12345678"}).ok());
  EXPECT_FALSE(ParsePasswordMessage({'Q', std::string("select 1\0", 9)}).ok());
}

TEST(WireCodec, PasswordAndSasl) {
  auto pw = ParsePasswordMessage(SerializePasswordMessage("s3cret"));
  ASSERT_TRUE(pw.ok());
  EXPECT_EQ(*pw, "s3cret");
  EXPECT_FALSE(ParsePasswordMessage({'p', "no-nul"}).ok());
  EXPECT_FALSE(ParsePasswordMessage({'p', std::string("a\0b\0", 4)}).ok());

  auto init =
      ParseSaslInitialResponse(SerializeSaslInitialResponse({"SCRAM-SHA-256", "n,,n=,r=x"}));
  ASSERT_TRUE(init.ok());
  EXPECT_EQ(init->mechanism, "SCRAM-SHA-256");
  EXPECT_EQ(init->data, "n,,n=,r=x");
  EXPECT_FALSE(
      ParseSaslInitialResponse({'p', std::string("SCRAM-SHA-256\0", 14) + Int32(100) + "x"}).ok());
  EXPECT_EQ(SerializeSaslResponse("abc").body, "abc");
}

TEST(WireCodec, ErrorAndKey) {
  auto e = ParseError(MakeError("28P01", "token expired"));
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->Get('C'), "28P01");
  EXPECT_EQ(e->Get('M'), "token expired");
  EXPECT_EQ(e->Get('S'), "FATAL");
  EXPECT_EQ(e->Get('D'), "");
  EXPECT_FALSE(ParseError({'E', std::string("Cabc", 4)}).ok());
  EXPECT_FALSE(ParseError({'E', ""}).ok());

  auto k = ParseBackendKeyData(SerializeBackendKeyData({7, 0xdeadbeef}));
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->pid, 7u);
  EXPECT_EQ(k->secret, 0xdeadbeefu);
  EXPECT_FALSE(ParseBackendKeyData({'K', "1234567"}).ok());
  EXPECT_FALSE(ParseReadyForQuery({'Z', "X"}).ok());
}

}  // namespace
}  // namespace arbor::proxy::wire
