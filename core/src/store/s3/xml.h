// The S3 store's XML answers (ListBucketResult, Error, DeleteResult,
// InitiateMultipartUploadResult, CompleteMultipartUploadResult) parsed with
// a real XML parser (expat) into a small tree. A body that is not
// well-formed XML, or whose root element is not the one the request expects
// (an HTML page from a proxy or a misconfigured endpoint answering a LIST),
// is an error naming the request and the endpoint, never an empty answer.
// expat rather than a DOM library (tinyxml2, pugixml): it is in Debian
// (libexpat1-dev) and on every machine that has libcurl's toolchain, a small
// C library with a stable ABI, and as a streaming parser it lets us refuse a
// DOCTYPE and bound the depth while building only the little tree we need.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace duckblock::s3 {

struct XmlElement {
  std::string name;  // local name: S3's default namespace is not part of it
  std::string text;  // character data directly inside (entities decoded)
  std::vector<XmlElement> children;

  const XmlElement* child(std::string_view child_name) const;
  std::vector<const XmlElement*> all(std::string_view child_name) const;
  std::optional<std::string> child_text(std::string_view child_name) const;
};

// Parses `body`; nullopt if it is not well-formed XML (or uses a DOCTYPE,
// which S3 never sends and which could expand entities). `error` gets why.
std::optional<XmlElement> parse_xml(std::string_view body, std::string* error = nullptr);

// Parses an answer that must have root element `root`; throws
// Error(kRemote) "<what>: <endpoint> answered with ..." otherwise, quoting
// the start of the body (control characters replaced).
XmlElement parse_s3_answer(std::string_view body, std::string_view root, const std::string& what,
                           const std::string& endpoint);

// The start of a body for an error message: at most `max` bytes, control
// characters and non-ASCII replaced by '?'.
std::string body_excerpt(std::string_view body, size_t max = 80);

}  // namespace duckblock::s3
