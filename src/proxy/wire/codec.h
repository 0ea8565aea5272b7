#pragma once

// The PostgreSQL v3 wire codec the proxy needs before a session is relayed: the startup
// packets and the messages of the authentication phase. Pure functions over bytes: no I/O,
// no state, no allocation beyond the returned values. Every length is checked against the
// buffer and a limit, so any input yields a value or a Status, never a crash.
//
// Framing, as the protocol defines it (all integers big-endian):
//   startup packet:  int32 length (includes itself), int32 code, body
//   regular message: byte type, int32 length (includes itself, not the type), body

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace arbor::proxy::wire {

// The largest startup packet accepted from a client before it has authenticated. Real
// clients send a few hundred bytes; the bound keeps what each pending connection can make the
// proxy hold small (docs/security.md).
inline constexpr uint32_t kMaxStartupLength = 8192;
// The largest message accepted from a client while it authenticates (its password or token).
inline constexpr uint32_t kMaxClientAuthMessageLength = 4096;
// The largest message accepted from a compute while logging in (its greeting's messages).
inline constexpr uint32_t kMaxAuthMessageLength = 1 << 20;

inline constexpr uint32_t kProtocolV3 = 196608;  // 3.0
inline constexpr uint32_t kSslRequestCode = 80877103;
inline constexpr uint32_t kGssEncRequestCode = 80877104;
inline constexpr uint32_t kCancelRequestCode = 80877102;

enum class StartupKind { kStartup, kSslRequest, kGssEncRequest, kCancel };

// A parsed startup packet. Value type.
struct StartupPacket {
  StartupKind kind = StartupKind::kStartup;
  uint32_t protocol = kProtocolV3;                          // kStartup only
  std::vector<std::pair<std::string, std::string>> params;  // kStartup only, in order
  uint32_t cancel_pid = 0;                                  // kCancel only
  uint32_t cancel_secret = 0;                               // kCancel only

  // The value of parameter `name`, or nullopt.
  std::optional<std::string> Param(std::string_view name) const;
  // Replaces or appends parameter `name`.
  void SetParam(const std::string& name, const std::string& value);
  // Removes parameter `name` if present.
  void EraseParam(std::string_view name);
};

// Validates the 4-byte length prefix of a startup packet and returns the packet's total
// length (including the prefix). InvalidArgument when it is below 8 or above
// kMaxStartupLength. REQUIRES: prefix.size() == 4.
[[nodiscard]] Result<uint32_t> ParseStartupLength(std::string_view prefix);

// Parses a whole startup packet (length prefix included). InvalidArgument for a length that
// disagrees with the buffer, an unknown code, an unsupported protocol major version, a
// parameter list that is not NUL-terminated pairs ending in an empty name, a missing `user`,
// or trailing bytes.
[[nodiscard]] Result<StartupPacket> ParseStartup(std::string_view packet);

// Serializes a packet as ParseStartup accepts it.
std::string SerializeStartup(const StartupPacket& packet);

// A framed regular message: the type byte and the body (without type and length).
struct Message {
  char type = 0;
  std::string body;
};

// Validates a 5-byte message header and returns the body length. InvalidArgument when the
// declared length is below 4 or the body would exceed `max_body`.
// REQUIRES: header.size() == 5.
[[nodiscard]] Result<uint32_t> ParseMessageHeader(std::string_view header, uint32_t max_body);

// Takes one complete message from the front of `buffer`: nullopt if the buffer does not hold
// a whole message yet, an error if the header is invalid (see ParseMessageHeader).
[[nodiscard]] Result<std::optional<Message>> TakeMessage(std::string& buffer, uint32_t max_body);

// Frames a message: type, length, body.
std::string SerializeMessage(char type, std::string_view body);

// ---- Authentication ('R', backend) ----
enum class AuthCode : uint32_t {
  kOk = 0,
  kKerberosV5 = 2,
  kCleartextPassword = 3,
  kMd5Password = 5,
  kGss = 7,
  kGssContinue = 8,
  kSspi = 9,
  kSasl = 10,
  kSaslContinue = 11,
  kSaslFinal = 12,
};

struct AuthRequest {
  AuthCode code = AuthCode::kOk;
  std::vector<std::string> sasl_mechanisms;  // kSasl
  std::string data;                          // kSaslContinue/kSaslFinal payload, kMd5 salt
};

// InvalidArgument if `m` is not a well-formed 'R' message of a known code.
[[nodiscard]] Result<AuthRequest> ParseAuth(const Message& m);
Message SerializeAuth(const AuthRequest& auth);

// ---- Password / SASL messages ('p', frontend); which one is meant depends on the state ----
// A cleartext PasswordMessage: one NUL-terminated string.
[[nodiscard]] Result<std::string> ParsePasswordMessage(const Message& m);
Message SerializePasswordMessage(std::string_view password);

struct SaslInitialResponse {
  std::string mechanism;
  std::string data;  // client-first-message
};
[[nodiscard]] Result<SaslInitialResponse> ParseSaslInitialResponse(const Message& m);
Message SerializeSaslInitialResponse(const SaslInitialResponse& r);
// A SASLResponse: the body is the raw payload.
Message SerializeSaslResponse(std::string_view data);

// ---- ErrorResponse ('E') and NoticeResponse ('N'), backend ----
struct ErrorFields {
  std::vector<std::pair<char, std::string>> fields;  // in order

  // The value of field `code` ('S' severity, 'C' SQLSTATE, 'M' message), or "".
  std::string Get(char code) const;
};
[[nodiscard]] Result<ErrorFields> ParseError(const Message& m);
// An ErrorResponse with severity FATAL unless given.
Message MakeError(std::string_view sqlstate, std::string_view message,
                  std::string_view severity = "FATAL");

// ---- ParameterStatus ('S'), BackendKeyData ('K'), ReadyForQuery ('Z'), backend ----
[[nodiscard]] Result<std::pair<std::string, std::string>> ParseParameterStatus(const Message& m);
Message SerializeParameterStatus(std::string_view name, std::string_view value);

struct BackendKey {
  uint32_t pid = 0;
  uint32_t secret = 0;
};
[[nodiscard]] Result<BackendKey> ParseBackendKeyData(const Message& m);
Message SerializeBackendKeyData(BackendKey key);

// Returns the transaction status byte: 'I', 'T' or 'E'.
[[nodiscard]] Result<char> ParseReadyForQuery(const Message& m);

// A CancelRequest startup packet for `key`.
std::string SerializeCancelRequest(BackendKey key);

}  // namespace arbor::proxy::wire
