#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "proxy/proxy.h"

namespace arbor::proxy {
namespace {

struct Free {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(X509* p) const { X509_free(p); }
  void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); }
  void operator()(FILE* f) const { fclose(f); }
};

// Writes with `write_pem` to a new file of mode `mode`, replacing it atomically.
template <typename W>
Status WritePem(const std::string& path, mode_t mode, W write_pem) {
  std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return Status::IOError("create " + tmp + ": " + strerror(errno));
  std::unique_ptr<FILE, Free> f(fdopen(fd, "w"));
  if (!f) {
    close(fd);
    return Status::IOError("fdopen " + tmp + ": " + strerror(errno));
  }
  bool ok = write_pem(f.get()) == 1 && fflush(f.get()) == 0 && fsync(fd) == 0;
  f.reset();
  if (!ok || rename(tmp.c_str(), path.c_str()) != 0) {
    unlink(tmp.c_str());
    return Status::IOError("write " + path + " failed");
  }
  return Status::Ok();
}

}  // namespace

Status GenerateSelfSignedCert(const std::string& cert_file, const std::string& key_file,
                              const std::string& common_name) {
  std::unique_ptr<EVP_PKEY, Free> key(EVP_EC_gen("P-256"));
  if (!key) return Status::Internal("EC key generation failed");
  std::unique_ptr<X509, Free> cert(X509_new());
  if (!cert) return Status::Internal("X509_new failed");
  X509_set_version(cert.get(), 2);  // v3, for subjectAltName
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof(serial)) != 1) return Status::Internal("RAND_bytes failed");
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof(serial), nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 10L * 365 * 24 * 3600);
  X509_set_pubkey(cert.get(), key.get());
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1,
                             0);
  X509_set_issuer_name(cert.get(), name);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert.get(), cert.get(), nullptr, nullptr, 0);
  std::string san = "DNS:" + common_name + ",DNS:*." + common_name;
  std::unique_ptr<X509_EXTENSION, Free> ext(
      X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, san.c_str()));
  if (!ext || X509_add_ext(cert.get(), ext.get(), -1) != 1) {
    return Status::InvalidArgument("cannot use '" + common_name + "' as a certificate name");
  }
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) {
    return Status::Internal("signing the certificate failed");
  }
  ARBOR_RETURN_IF_ERROR(WritePem(key_file, 0600, [&](FILE* f) {
    return PEM_write_PrivateKey(f, key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  }));
  return WritePem(cert_file, 0644, [&](FILE* f) { return PEM_write_X509(f, cert.get()); });
}

}  // namespace arbor::proxy
