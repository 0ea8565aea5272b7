#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <vector>

#include "proxy/auth/base64.h"
#include "proxy/auth/crypto.h"
#include "proxy/auth/scram.h"
#include "proxy/auth/token.h"

namespace arbor::proxy::auth {
namespace {

const std::string kEp = "projects/default/branches/main/endpoints/primary";
const std::string kKey(32, 'k');

TEST(Base64, RoundTripsAndRejects) {
  for (std::string s : std::vector<std::string>{"", "f", "fo", "foo", "foob", "fooba", "foobar",
                                                std::string("\0\xff\xfe", 3)}) {
    auto std_back = Base64Decode(Base64Encode(s));
    ASSERT_TRUE(std_back.ok());
    EXPECT_EQ(*std_back, s);
    auto url_back = Base64UrlDecode(Base64UrlEncode(s));
    ASSERT_TRUE(url_back.ok());
    EXPECT_EQ(*url_back, s);
  }
  EXPECT_EQ(Base64Encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(Base64Encode("fo"), "Zm8=");
  EXPECT_EQ(Base64UrlEncode("\xfb\xff"), "-_8");
  EXPECT_FALSE(Base64Decode("Zm8").ok());
  EXPECT_FALSE(Base64Decode("Zm9=").ok());  // non-canonical trailing bits
  EXPECT_FALSE(Base64Decode("Z!8=").ok());
  EXPECT_FALSE(Base64UrlDecode("Zm8=").ok());
  EXPECT_FALSE(Base64UrlDecode("A").ok());
}

// RFC 7677 section 3, computed independently of this code by the RFC's authors.
TEST(Scram, Rfc7677Vector) {
  ScramClient c("user", "pencil", "rOprNGfwEbeRWgbNEkqO");
  EXPECT_EQ(c.ClientFirst(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
  auto final_msg = c.ClientFinal(
      "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
  ASSERT_TRUE(final_msg.ok()) << final_msg.status().ToString();
  EXPECT_EQ(*final_msg,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
            "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
  EXPECT_TRUE(c.VerifyServerFinal("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=").ok());
  // A server that does not know the password cannot produce the signature.
  EXPECT_FALSE(c.VerifyServerFinal("v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=").ok());
  EXPECT_FALSE(c.VerifyServerFinal("e=invalid-proof").ok());
  EXPECT_FALSE(c.VerifyServerFinal("garbage").ok());
}

// The RFC 7677 exchange again, logging in with the stored keys instead of the password: the
// same proof, and the same server signature accepted.
TEST(Scram, SecretLogsInWithoutThePassword) {
  auto salt = Base64Decode("W22ZaJ0SNY7soEsUEjb6gQ==");
  ASSERT_TRUE(salt.ok());
  ScramSecret secret = ScramSecret::Derive("pencil", *salt, 4096);
  EXPECT_TRUE(secret.Matches("pencil"));
  EXPECT_FALSE(secret.Matches("pencil2"));
  EXPECT_FALSE(secret.Matches(""));
  EXPECT_EQ(secret.Verifier().rfind("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$", 0), 0u);
  ScramClient c("user", secret, "rOprNGfwEbeRWgbNEkqO");
  auto final_msg = c.ClientFinal(
      "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
  ASSERT_TRUE(final_msg.ok()) << final_msg.status().ToString();
  EXPECT_EQ(*final_msg,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
            "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
  EXPECT_TRUE(c.VerifyServerFinal("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=").ok());
  // A server holding another salt is refused before any proof is sent.
  ScramClient other("user", secret, "rOprNGfwEbeRWgbNEkqO");
  EXPECT_FALSE(
      other.ClientFinal("r=rOprNGfwEbeRWgbNEkqOxyz,s=AAAAaJ0SNY7soEsUEjb6gQ==,i=4096").ok());
  // Fresh secrets of one password differ (random salt) and both match it.
  auto a = ScramSecret::FromPassword("pw"), b = ScramSecret::FromPassword("pw");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(a->salt, b->salt);
  EXPECT_TRUE(a->Matches("pw") && b->Matches("pw"));
}

// A branch's fresh roles: secrets of no password, consistent with each other (the proxy logs
// in to the compute with client_key; postgres checks it against stored_key), never alike.
TEST(Scram, UnguessableSecretsAreConsistentAndMatchNoPassword) {
  auto a = ScramSecret::Unguessable(), b = ScramSecret::Unguessable();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->stored_key, Sha256(a->client_key));
  EXPECT_EQ(a->salt.size(), 16u);
  EXPECT_NE(a->salt, b->salt);
  EXPECT_NE(a->client_key, b->client_key);
  EXPECT_NE(a->server_key, b->server_key);
  EXPECT_EQ(a->Verifier().rfind("SCRAM-SHA-256$4096:", 0), 0u);
  for (const char* guess : {"", "postgres", "owner"}) EXPECT_FALSE(a->Matches(guess)) << guess;
}

TEST(Scram, RejectsBadServerFirst) {
  auto final_of = [](std::string_view server_first) {
    ScramClient c("", "pw", "abc");
    return c.ClientFinal(server_first);
  };
  EXPECT_FALSE(final_of("r=xyz123,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096").ok());  // foreign nonce
  EXPECT_FALSE(final_of("r=abc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096").ok());     // not extended
  EXPECT_FALSE(final_of("r=abcd,s=!!,i=4096").ok());
  EXPECT_FALSE(final_of("r=abcd,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0").ok());
  EXPECT_FALSE(final_of("r=abcd,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=99999999999").ok());
  EXPECT_FALSE(final_of("r=abcd,s=W22ZaJ0SNY7soEsUEjb6gQ==").ok());
  EXPECT_FALSE(final_of("").ok());
  EXPECT_TRUE(final_of("r=abcd,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1").ok());
  ScramClient not_started("", "pw", "abc");
  EXPECT_FALSE(
      not_started.VerifyServerFinal("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=").ok());
}

TEST(Token, IssueAndVerify) {
  TokenSigner s(kKey);
  auto t = s.Issue(kEp, "app", 3600, 1000);
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(TokenSigner::LooksLikeToken(*t));
  auto c = s.Verify(*t, kEp, 1001);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->role, "app");
  EXPECT_EQ(c->endpoint, kEp);
  EXPECT_EQ(c->issued_at, 1000);
  EXPECT_EQ(c->expires_at, 4600);
  EXPECT_TRUE(s.Verify(*t, kEp, 4599).ok());
}

TEST(Token, TtlBounds) {
  TokenSigner s(kKey);
  EXPECT_FALSE(s.Issue(kEp, "app", 299, 0).ok());
  EXPECT_TRUE(s.Issue(kEp, "app", 300, 0).ok());
  EXPECT_TRUE(s.Issue(kEp, "app", 3600, 0).ok());
  EXPECT_FALSE(s.Issue(kEp, "app", 3601, 0).ok());
  EXPECT_FALSE(s.Issue(kEp, "", 600, 0).ok());
  EXPECT_FALSE(s.Issue("", "app", 600, 0).ok());
}

TEST(Token, Refusals) {
  TokenSigner s(kKey);
  std::string t = *s.Issue(kEp, "app", 300, 1000);
  // Expired.
  auto expired = s.Verify(t, kEp, 1300);
  ASSERT_FALSE(expired.ok());
  EXPECT_NE(expired.status().message().find("expired"), std::string::npos);
  // Another endpoint.
  auto other = s.Verify(t, "projects/default/branches/dev/endpoints/primary", 1001);
  ASSERT_FALSE(other.ok());
  EXPECT_NE(other.status().message().find("not projects/default/branches/dev"), std::string::npos);
  // Another key.
  TokenSigner other_key(std::string(32, 'x'));
  auto forged = other_key.Verify(t, kEp, 1001);
  ASSERT_FALSE(forged.ok());
  EXPECT_NE(forged.status().message().find("signature"), std::string::npos);
  // A tampered payload (role changed) keeps the old signature.
  size_t d1 = t.find('.'), d2 = t.rfind('.');
  std::string payload =
      Base64UrlEncode(R"({"sub":"postgres","endpoint":")" + kEp + R"(","iat":1000,"exp":9999})");
  EXPECT_FALSE(s.Verify(t.substr(0, d1 + 1) + payload + t.substr(d2), kEp, 1001).ok());
  // alg=none with no signature.
  std::string none =
      Base64UrlEncode(R"({"alg":"none"})") + "." + t.substr(d1 + 1, d2 - d1 - 1) + ".";
  EXPECT_FALSE(s.Verify(none, kEp, 1001).ok());
  // alg=none with a signature that is valid for this key: only the algorithm check can
  // refuse it (the empty signature above is already refused by the signature check).
  std::string none_input =
      Base64UrlEncode(R"({"alg":"none","typ":"JWT"})") + "." + t.substr(d1 + 1, d2 - d1 - 1);
  auto none_signed =
      s.Verify(none_input + "." + Base64UrlEncode(HmacSha256(kKey, none_input)), kEp, 1001);
  ASSERT_FALSE(none_signed.ok());
  EXPECT_NE(none_signed.status().message().find("algorithm must be HS256"), std::string::npos);
  // Garbage.
  for (std::string g : std::vector<std::string>{"", ".", "..", "a.b.c", "eyJ.eyJ.x", "a.b.c.d",
                                                std::string(5000, '.')}) {
    EXPECT_FALSE(s.Verify(g, kEp, 1001).ok()) << g;
  }
  // A validly signed token with the wrong claim types is refused, not trusted.
  std::string hdr = Base64UrlEncode(R"({"alg":"HS256","typ":"JWT"})");
  std::string bad_claims =
      hdr + "." + Base64UrlEncode(R"({"sub":1,"endpoint":"x","iat":1,"exp":"x"})");
  std::string signed_bad = bad_claims + "." + Base64UrlEncode(HmacSha256(kKey, bad_claims));
  EXPECT_FALSE(s.Verify(signed_bad, "x", 0).ok());
  // Issued in the future.
  std::string future = *s.Issue(kEp, "app", 300, 10000);
  EXPECT_FALSE(s.Verify(future, kEp, 1000).ok());
}

TEST(Token, LooksLikeToken) {
  EXPECT_FALSE(TokenSigner::LooksLikeToken("hunter2"));
  EXPECT_FALSE(TokenSigner::LooksLikeToken("eyJhbGc.only-one-dot"));
  EXPECT_FALSE(TokenSigner::LooksLikeToken("eyJ a.b.c"));
  EXPECT_TRUE(TokenSigner::LooksLikeToken("eyJa.b.c"));
}

TEST(Token, KeyFileCreatedOnceWithMode0600) {
  auto dir =
      std::filesystem::temp_directory_path() / ("arbor_key_test_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::string path = (dir / "jwt.key").string();
  auto a = TokenSigner::LoadOrCreate(path);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_size, 32);
  auto b = TokenSigner::LoadOrCreate(path);
  ASSERT_TRUE(b.ok());
  // The second load reads the same key: its tokens verify with the first.
  std::string t = *b->Issue(kEp, "app", 600, 0);
  EXPECT_TRUE(a->Verify(t, kEp, 1).ok());
  // A truncated key file is an error, not a weak key.
  std::filesystem::resize_file(path, 5);
  EXPECT_FALSE(TokenSigner::LoadOrCreate(path).ok());
  std::filesystem::remove_all(dir);
}

// 10e, "An existing jwt.key's owner and mode are not checked": a key others can read (or a
// symlink to one) would let them mint tokens, so it is refused rather than used.
TEST(Token, KeyFileReadableByOthersIsRefused) {
  auto dir =
      std::filesystem::temp_directory_path() / ("arbor_key_mode_test_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::string path = (dir / "jwt.key").string();
  ASSERT_TRUE(TokenSigner::LoadOrCreate(path).ok());
  ASSERT_EQ(chmod(path.c_str(), 0644), 0);
  auto loose = TokenSigner::LoadOrCreate(path);
  ASSERT_FALSE(loose.ok());
  EXPECT_NE(loose.status().message().find("mode 0600"), std::string::npos);
  ASSERT_EQ(chmod(path.c_str(), 0600), 0);
  EXPECT_TRUE(TokenSigner::LoadOrCreate(path).ok());
  std::string link = (dir / "link.key").string();
  ASSERT_EQ(symlink(path.c_str(), link.c_str()), 0);
  EXPECT_FALSE(TokenSigner::LoadOrCreate(link).ok());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace arbor::proxy::auth
