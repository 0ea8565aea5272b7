#include "api/errors.h"

namespace arbor::api {

const char* ErrorCodeFor(Code code) {
  switch (code) {
    case Code::kInvalidArgument:
      return "INVALID_PARAMETER_VALUE";
    case Code::kFailedPrecondition:
      return "FAILED_PRECONDITION";
    case Code::kOutOfRange:
      return "OUT_OF_RANGE";
    case Code::kPermissionDenied:
      return "PERMISSION_DENIED";
    case Code::kNotFound:
      return "RESOURCE_DOES_NOT_EXIST";
    case Code::kAlreadyExists:
      return "RESOURCE_ALREADY_EXISTS";
    case Code::kResourceExhausted:
    case Code::kUnavailable:
      return "TEMPORARILY_UNAVAILABLE";
    default:
      return "INTERNAL_ERROR";
  }
}

int HttpStatusFor(Code code) {
  switch (code) {
    case Code::kInvalidArgument:
    case Code::kFailedPrecondition:
    case Code::kOutOfRange:
      return 400;
    case Code::kPermissionDenied:
      return 403;
    case Code::kNotFound:
      return 404;
    case Code::kAlreadyExists:
      return 409;
    case Code::kResourceExhausted:
    case Code::kUnavailable:
      return 503;
    default:
      return 500;
  }
}

Code CodeForError(std::string_view error_code, int http_status) {
  if (error_code == "INVALID_PARAMETER_VALUE") return Code::kInvalidArgument;
  if (error_code == "FAILED_PRECONDITION") return Code::kFailedPrecondition;
  if (error_code == "UNAUTHENTICATED") return Code::kFailedPrecondition;
  if (error_code == "OUT_OF_RANGE") return Code::kOutOfRange;
  if (error_code == "PERMISSION_DENIED") return Code::kPermissionDenied;
  if (error_code == "RESOURCE_DOES_NOT_EXIST") return Code::kNotFound;
  if (error_code == "RESOURCE_ALREADY_EXISTS") return Code::kAlreadyExists;
  if (error_code == "TEMPORARILY_UNAVAILABLE") return Code::kResourceExhausted;
  if (error_code == "INTERNAL_ERROR") return Code::kInternal;
  return http_status >= 400 && http_status < 500 ? Code::kInvalidArgument : Code::kInternal;
}

}  // namespace arbor::api
