#include "proxy/wire/codec.h"

#include <cstring>

namespace arbor::proxy::wire {
namespace {

// Bounds-checked reader over a byte range; every accessor fails instead of over-reading.
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}

  bool Int32(uint32_t* out) {
    if (data_.size() - pos_ < 4) return false;
    const auto* p = reinterpret_cast<const unsigned char*>(data_.data() + pos_);
    *out = (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
    pos_ += 4;
    return true;
  }
  bool Byte(char* out) {
    if (pos_ >= data_.size()) return false;
    *out = data_[pos_++];
    return true;
  }
  // A NUL-terminated string; the NUL is consumed, not returned.
  bool CString(std::string* out) {
    size_t end = data_.find('\0', pos_);
    if (end == std::string_view::npos) return false;
    out->assign(data_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return true;
  }
  bool Bytes(size_t n, std::string* out) {
    if (data_.size() - pos_ < n) return false;
    out->assign(data_.substr(pos_, n));
    pos_ += n;
    return true;
  }
  std::string_view Rest() const { return data_.substr(pos_); }
  bool AtEnd() const { return pos_ == data_.size(); }

 private:
  std::string_view data_;
  size_t pos_ = 0;
};

void PutInt32(std::string& out, uint32_t v) {
  out.push_back(static_cast<char>(v >> 24));
  out.push_back(static_cast<char>(v >> 16));
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v));
}

void PutCString(std::string& out, std::string_view s) {
  out.append(s);
  out.push_back('\0');
}

uint32_t GetInt32(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

Status Bad(std::string_view what) {
  return Status::InvalidArgument("invalid protocol message: " + std::string(what));
}

Status ExpectType(const Message& m, char type, const char* name) {
  if (m.type != type) {
    return Bad(std::string("expected ") + name + " ('" + type + "'), got type byte " +
               std::to_string(static_cast<unsigned char>(m.type)));
  }
  return Status::Ok();
}

}  // namespace

std::optional<std::string> StartupPacket::Param(std::string_view name) const {
  for (const auto& [k, v] : params) {
    if (k == name) return v;
  }
  return std::nullopt;
}

void StartupPacket::SetParam(const std::string& name, const std::string& value) {
  for (auto& [k, v] : params) {
    if (k == name) {
      v = value;
      return;
    }
  }
  params.emplace_back(name, value);
}

void StartupPacket::EraseParam(std::string_view name) {
  std::erase_if(params, [&](const auto& kv) { return kv.first == name; });
}

Result<uint32_t> ParseStartupLength(std::string_view prefix) {
  if (prefix.size() != 4) return Bad("startup length prefix must be 4 bytes");
  uint32_t len = GetInt32(prefix);
  if (len < 8) return Bad("startup packet length " + std::to_string(len) + " is below 8");
  if (len > kMaxStartupLength) {
    return Bad("startup packet length " + std::to_string(len) + " exceeds " +
               std::to_string(kMaxStartupLength));
  }
  return len;
}

Result<StartupPacket> ParseStartup(std::string_view packet) {
  if (packet.size() < 4) return Bad("startup packet truncated");
  ARBOR_ASSIGN_OR_RETURN(uint32_t len, ParseStartupLength(packet.substr(0, 4)));
  if (len != packet.size()) {
    return Bad("startup packet declares " + std::to_string(len) + " bytes but has " +
               std::to_string(packet.size()));
  }
  Reader r(packet.substr(4));
  uint32_t code = 0;
  if (!r.Int32(&code)) return Bad("startup packet truncated");
  StartupPacket out;
  switch (code) {
    case kSslRequestCode:
    case kGssEncRequestCode:
      if (!r.AtEnd()) return Bad("SSL/GSSENC request has trailing bytes");
      out.kind = code == kSslRequestCode ? StartupKind::kSslRequest : StartupKind::kGssEncRequest;
      return out;
    case kCancelRequestCode:
      out.kind = StartupKind::kCancel;
      if (!r.Int32(&out.cancel_pid) || !r.Int32(&out.cancel_secret)) {
        return Bad("CancelRequest truncated");
      }
      if (!r.AtEnd()) return Bad("CancelRequest has trailing bytes");
      return out;
    default:
      break;
  }
  if ((code >> 16) != 3) {
    return Bad("unsupported frontend protocol " + std::to_string(code >> 16) + "." +
               std::to_string(code & 0xffff) + ": the proxy speaks 3.0");
  }
  out.kind = StartupKind::kStartup;
  out.protocol = code;
  for (;;) {
    std::string name;
    if (!r.CString(&name)) return Bad("startup parameters are not NUL-terminated");
    if (name.empty()) break;
    std::string value;
    if (!r.CString(&value)) return Bad("startup parameter '" + name + "' has no value");
    if (out.Param(name)) return Bad("startup parameter '" + name + "' given twice");
    out.params.emplace_back(std::move(name), std::move(value));
  }
  if (!r.AtEnd()) return Bad("startup packet has bytes after its parameter list");
  auto user = out.Param("user");
  if (!user || user->empty()) return Bad("no PostgreSQL user name specified in startup packet");
  return out;
}

std::string SerializeStartup(const StartupPacket& p) {
  std::string body;
  switch (p.kind) {
    case StartupKind::kSslRequest:
      PutInt32(body, kSslRequestCode);
      break;
    case StartupKind::kGssEncRequest:
      PutInt32(body, kGssEncRequestCode);
      break;
    case StartupKind::kCancel:
      PutInt32(body, kCancelRequestCode);
      PutInt32(body, p.cancel_pid);
      PutInt32(body, p.cancel_secret);
      break;
    case StartupKind::kStartup:
      PutInt32(body, p.protocol);
      for (const auto& [k, v] : p.params) {
        PutCString(body, k);
        PutCString(body, v);
      }
      body.push_back('\0');
      break;
  }
  std::string out;
  PutInt32(out, static_cast<uint32_t>(body.size() + 4));
  out += body;
  return out;
}

std::string SerializeCancelRequest(BackendKey key) {
  StartupPacket p;
  p.kind = StartupKind::kCancel;
  p.cancel_pid = key.pid;
  p.cancel_secret = key.secret;
  return SerializeStartup(p);
}

Result<uint32_t> ParseMessageHeader(std::string_view header, uint32_t max_body) {
  if (header.size() != 5) return Bad("message header must be 5 bytes");
  uint32_t len = GetInt32(header.substr(1));
  if (len < 4) return Bad("message length " + std::to_string(len) + " is below 4");
  if (len - 4 > max_body) {
    return Bad("message of " + std::to_string(len) + " bytes exceeds the limit of " +
               std::to_string(max_body));
  }
  return len - 4;
}

Result<std::optional<Message>> TakeMessage(std::string& buffer, uint32_t max_body) {
  if (buffer.size() < 5) return std::optional<Message>();
  ARBOR_ASSIGN_OR_RETURN(uint32_t body_len,
                         ParseMessageHeader(std::string_view(buffer).substr(0, 5), max_body));
  if (buffer.size() - 5 < body_len) return std::optional<Message>();
  Message m;
  m.type = buffer[0];
  m.body = buffer.substr(5, body_len);
  buffer.erase(0, 5 + static_cast<size_t>(body_len));
  return std::optional<Message>(std::move(m));
}

std::string SerializeMessage(char type, std::string_view body) {
  std::string out;
  out.reserve(body.size() + 5);
  out.push_back(type);
  PutInt32(out, static_cast<uint32_t>(body.size() + 4));
  out.append(body);
  return out;
}

Result<AuthRequest> ParseAuth(const Message& m) {
  ARBOR_RETURN_IF_ERROR(ExpectType(m, 'R', "Authentication"));
  Reader r(m.body);
  uint32_t code = 0;
  if (!r.Int32(&code)) return Bad("Authentication message truncated");
  AuthRequest out;
  out.code = static_cast<AuthCode>(code);
  switch (out.code) {
    case AuthCode::kOk:
    case AuthCode::kKerberosV5:
    case AuthCode::kCleartextPassword:
    case AuthCode::kGss:
    case AuthCode::kSspi:
      if (!r.AtEnd()) return Bad("Authentication message has trailing bytes");
      return out;
    case AuthCode::kMd5Password:
      if (!r.Bytes(4, &out.data) || !r.AtEnd())
        return Bad("AuthenticationMD5Password needs 4 bytes of salt");
      return out;
    case AuthCode::kSasl:
      for (;;) {
        std::string mech;
        if (!r.CString(&mech)) return Bad("AuthenticationSASL mechanism list not terminated");
        if (mech.empty()) break;
        out.sasl_mechanisms.push_back(std::move(mech));
      }
      if (!r.AtEnd()) return Bad("AuthenticationSASL has trailing bytes");
      if (out.sasl_mechanisms.empty()) return Bad("AuthenticationSASL lists no mechanism");
      return out;
    case AuthCode::kGssContinue:
    case AuthCode::kSaslContinue:
    case AuthCode::kSaslFinal:
      out.data.assign(r.Rest());
      return out;
  }
  return Bad("unknown authentication request code " + std::to_string(code));
}

Message SerializeAuth(const AuthRequest& a) {
  std::string body;
  PutInt32(body, static_cast<uint32_t>(a.code));
  if (a.code == AuthCode::kSasl) {
    for (const auto& mech : a.sasl_mechanisms) PutCString(body, mech);
    body.push_back('\0');
  } else {
    body += a.data;
  }
  return {'R', std::move(body)};
}

Result<std::string> ParsePasswordMessage(const Message& m) {
  ARBOR_RETURN_IF_ERROR(ExpectType(m, 'p', "PasswordMessage"));
  Reader r(m.body);
  std::string password;
  if (!r.CString(&password) || !r.AtEnd()) {
    return Bad("PasswordMessage must be one NUL-terminated string");
  }
  return password;
}

Message SerializePasswordMessage(std::string_view password) {
  std::string body;
  PutCString(body, password);
  return {'p', std::move(body)};
}

Result<SaslInitialResponse> ParseSaslInitialResponse(const Message& m) {
  ARBOR_RETURN_IF_ERROR(ExpectType(m, 'p', "SASLInitialResponse"));
  Reader r(m.body);
  SaslInitialResponse out;
  uint32_t len = 0;
  if (!r.CString(&out.mechanism) || !r.Int32(&len)) return Bad("SASLInitialResponse truncated");
  if (len == 0xffffffffu) {
    if (!r.AtEnd()) return Bad("SASLInitialResponse has trailing bytes");
    return out;
  }
  if (!r.Bytes(len, &out.data)) return Bad("SASLInitialResponse data truncated");
  if (!r.AtEnd()) return Bad("SASLInitialResponse has trailing bytes");
  return out;
}

Message SerializeSaslInitialResponse(const SaslInitialResponse& s) {
  std::string body;
  PutCString(body, s.mechanism);
  PutInt32(body, static_cast<uint32_t>(s.data.size()));
  body += s.data;
  return {'p', std::move(body)};
}

Message SerializeSaslResponse(std::string_view data) { return {'p', std::string(data)}; }

std::string ErrorFields::Get(char code) const {
  for (const auto& [c, v] : fields) {
    if (c == code) return v;
  }
  return "";
}

Result<ErrorFields> ParseError(const Message& m) {
  if (m.type != 'E' && m.type != 'N') return Bad("expected ErrorResponse or NoticeResponse");
  Reader r(m.body);
  ErrorFields out;
  for (;;) {
    char code = 0;
    if (!r.Byte(&code)) return Bad("ErrorResponse not terminated");
    if (code == '\0') break;
    std::string value;
    if (!r.CString(&value)) return Bad("ErrorResponse field not terminated");
    out.fields.emplace_back(code, std::move(value));
  }
  if (!r.AtEnd()) return Bad("ErrorResponse has trailing bytes");
  return out;
}

Message MakeError(std::string_view sqlstate, std::string_view message, std::string_view severity) {
  std::string body;
  body.push_back('S');
  PutCString(body, severity);
  body.push_back('V');
  PutCString(body, severity);
  body.push_back('C');
  PutCString(body, sqlstate);
  body.push_back('M');
  PutCString(body, message);
  body.push_back('\0');
  return {'E', std::move(body)};
}

Result<std::pair<std::string, std::string>> ParseParameterStatus(const Message& m) {
  ARBOR_RETURN_IF_ERROR(ExpectType(m, 'S', "ParameterStatus"));
  Reader r(m.body);
  std::pair<std::string, std::string> out;
  if (!r.CString(&out.first) || !r.CString(&out.second) || !r.AtEnd()) {
    return Bad("ParameterStatus must be two NUL-terminated strings");
  }
  return out;
}

Message SerializeParameterStatus(std::string_view name, std::string_view value) {
  std::string body;
  PutCString(body, name);
  PutCString(body, value);
  return {'S', std::move(body)};
}

Result<BackendKey> ParseBackendKeyData(const Message& m) {
  ARBOR_RETURN_IF_ERROR(ExpectType(m, 'K', "BackendKeyData"));
  Reader r(m.body);
  BackendKey key;
  if (!r.Int32(&key.pid) || !r.Int32(&key.secret) || !r.AtEnd()) {
    return Bad("BackendKeyData must be 8 bytes");
  }
  return key;
}

Message SerializeBackendKeyData(BackendKey key) {
  std::string body;
  PutInt32(body, key.pid);
  PutInt32(body, key.secret);
  return {'K', std::move(body)};
}

Result<char> ParseReadyForQuery(const Message& m) {
  ARBOR_RETURN_IF_ERROR(ExpectType(m, 'Z', "ReadyForQuery"));
  if (m.body.size() != 1) return Bad("ReadyForQuery must be 1 byte");
  char s = m.body[0];
  if (s != 'I' && s != 'T' && s != 'E') return Bad("ReadyForQuery has an unknown status");
  return s;
}

}  // namespace arbor::proxy::wire
