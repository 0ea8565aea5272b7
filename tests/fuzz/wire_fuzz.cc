// libFuzzer target for the proxy's wire codec: the startup packet parser and every parser of
// the authentication phase. Any input must yield a value or a Status; the sanitizers catch
// over-reads, and the round trips below check that what parses also re-serializes to itself.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "proxy/auth/scram.h"
#include "proxy/auth/token.h"
#include "proxy/router.h"
#include "proxy/wire/codec.h"

namespace w = arbor::proxy::wire;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string in(reinterpret_cast<const char*>(data), size);

  // Startup phase, as the session reads it: a length prefix, then the whole packet.
  if (in.size() >= 4) {
    auto len = w::ParseStartupLength(std::string_view(in).substr(0, 4));
    if (len.ok() && *len <= in.size()) {
      auto p = w::ParseStartup(std::string_view(in).substr(0, *len));
      if (p.ok() && w::SerializeStartup(*p) != in.substr(0, *len)) std::abort();
    }
  }
  (void)w::ParseStartup(in);

  // Auth phase: frame messages out of the stream and hand each to every parser.
  std::string buf = in;
  for (int i = 0; i < 64; ++i) {
    auto m = w::TakeMessage(buf, w::kMaxAuthMessageLength);
    if (!m.ok() || !m->has_value()) break;
    const w::Message& msg = **m;
    if (auto a = w::ParseAuth(msg); a.ok()) {
      auto again = w::ParseAuth(w::SerializeAuth(*a));
      if (!again.ok() || again->code != a->code) std::abort();
    }
    (void)w::ParsePasswordMessage(msg);
    (void)w::ParseSaslInitialResponse(msg);
    if (auto e = w::ParseError(msg); e.ok()) (void)e->Get('C');
    (void)w::ParseParameterStatus(msg);
    if (auto k = w::ParseBackendKeyData(msg); k.ok()) {
      if (w::SerializeBackendKeyData(*k).body != msg.body) std::abort();
    }
    (void)w::ParseReadyForQuery(msg);
    // What the proxy does with auth-phase payloads: SCRAM server messages from a compute, and
    // passwords (tokens, endpoint= prefixes) from a client.
    if (msg.type == 'R' && msg.body.size() < 4096) {
      arbor::proxy::auth::ScramClient scram("", "pw", "nonce");
      auto final_msg = scram.ClientFinal(msg.body);
      (void)scram.VerifyServerFinal(msg.body);
      (void)final_msg;
    }
    if (msg.type == 'p') {
      auto split = arbor::proxy::SplitPassword(msg.body);
      if (split.endpoint) (void)arbor::proxy::ParseEndpointName(*split.endpoint);
      static const arbor::proxy::auth::TokenSigner signer(std::string(32, 'k'));
      auto claims = signer.Verify(split.password, "projects/p/branches/b/endpoints/e", 1000);
      if (claims.ok()) std::abort();  // nothing the fuzzer makes carries a valid signature
    }
  }
  // Routing text from a startup packet or an SNI host.
  if (in.size() < 4096) {
    auto opts = arbor::proxy::SplitOptions(in);
    if (opts.endpoint) (void)arbor::proxy::ParseEndpointName(*opts.endpoint);
    (void)arbor::proxy::EndpointFromSni(in);
  }
  return 0;
}
