#include "xml.h"

#include <expat.h>

#include "duckblock/error.h"

namespace duckblock::s3 {

namespace {

// S3 documents are two or three levels deep; anything far deeper is not one.
constexpr size_t kMaxDepth = 64;

struct Builder {
  XML_Parser parser = nullptr;
  XmlElement root;
  bool have_root = false;
  std::vector<XmlElement*> stack;
  std::string error;

  void stop(const std::string& why) {
    if (error.empty()) error = why;
    XML_StopParser(parser, XML_FALSE);
  }
};

void XMLCALL on_start(void* user, const XML_Char* name, const XML_Char**) {
  auto* b = static_cast<Builder*>(user);
  if (b->stack.size() >= kMaxDepth) return b->stop("elements nested too deeply");
  std::string n = name;
  // Without namespace processing a prefixed name keeps its prefix.
  if (auto colon = n.find(':'); colon != std::string::npos) n = n.substr(colon + 1);
  if (b->stack.empty()) {
    b->root.name = std::move(n);
    b->have_root = true;
    b->stack.push_back(&b->root);
    return;
  }
  auto& kids = b->stack.back()->children;
  kids.push_back(XmlElement{std::move(n), {}, {}});
  b->stack.push_back(&kids.back());
}

void XMLCALL on_end(void* user, const XML_Char*) {
  auto* b = static_cast<Builder*>(user);
  if (!b->stack.empty()) b->stack.pop_back();
}

void XMLCALL on_text(void* user, const XML_Char* s, int len) {
  auto* b = static_cast<Builder*>(user);
  if (!b->stack.empty()) b->stack.back()->text.append(s, size_t(len));
}

void XMLCALL on_doctype(void* user, const XML_Char*, const XML_Char*, const XML_Char*, int) {
  static_cast<Builder*>(user)->stop("a DOCTYPE, which S3 never sends");
}

}  // namespace

const XmlElement* XmlElement::child(std::string_view child_name) const {
  for (const auto& c : children) {
    if (c.name == child_name) return &c;
  }
  return nullptr;
}

std::vector<const XmlElement*> XmlElement::all(std::string_view child_name) const {
  std::vector<const XmlElement*> out;
  for (const auto& c : children) {
    if (c.name == child_name) out.push_back(&c);
  }
  return out;
}

std::optional<std::string> XmlElement::child_text(std::string_view child_name) const {
  if (const auto* c = child(child_name)) return c->text;
  return std::nullopt;
}

std::optional<XmlElement> parse_xml(std::string_view body, std::string* error) {
  // S3 may send whitespace before the document while it works on a long
  // request (CompleteMultipartUpload); an XML declaration after it would be
  // rejected, so the parser starts at the first non-blank byte.
  size_t start = body.find_first_not_of(" \t\r\n");
  if (start == std::string_view::npos) {
    if (error) *error = "an empty body";
    return std::nullopt;
  }
  body.remove_prefix(start);
  Builder b;
  b.parser = XML_ParserCreate("UTF-8");
  if (!b.parser) throw Error(ErrorKind::kIO, "cannot create an XML parser (out of memory)");
  XML_SetUserData(b.parser, &b);
  XML_SetElementHandler(b.parser, on_start, on_end);
  XML_SetCharacterDataHandler(b.parser, on_text);
  XML_SetStartDoctypeDeclHandler(b.parser, on_doctype);
  bool ok = true;
  // Fed in pieces: XML_Parse takes an int length.
  constexpr size_t kChunk = 1 << 30;
  while (ok) {
    size_t n = std::min(body.size(), kChunk);
    bool last = n == body.size();
    ok = XML_Parse(b.parser, body.data(), int(n), last ? XML_TRUE : XML_FALSE) == XML_STATUS_OK;
    body.remove_prefix(n);
    if (last) break;
  }
  if (!ok) {
    if (error) {
      *error = !b.error.empty() ? b.error
                                : std::string("not well-formed XML (") + XML_ErrorString(XML_GetErrorCode(b.parser)) +
                                      " at line " + std::to_string(XML_GetCurrentLineNumber(b.parser)) + ")";
    }
    XML_ParserFree(b.parser);
    return std::nullopt;
  }
  XML_ParserFree(b.parser);
  if (!b.have_root) {
    if (error) *error = "no root element";
    return std::nullopt;
  }
  return std::move(b.root);
}

std::string body_excerpt(std::string_view body, size_t max) {
  size_t start = body.find_first_not_of(" \t\r\n");
  if (start == std::string_view::npos) return "";
  body.remove_prefix(start);
  std::string out(body.substr(0, max));
  for (char& c : out) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f) c = '?';
  }
  if (body.size() > max) out += "...";
  return out;
}

XmlElement parse_s3_answer(std::string_view body, std::string_view root, const std::string& what,
                           const std::string& endpoint) {
  std::string why;
  auto doc = parse_xml(body, &why);
  if (doc && doc->name == root) return std::move(*doc);
  std::string got = doc ? "an XML document with root <" + doc->name + ">" : why;
  std::string excerpt = body_excerpt(body);
  throw Error(ErrorKind::kRemote, what + ": " + endpoint + " answered with " + got + ", not an S3 <" +
                                      std::string(root) + "> document" +
                                      (excerpt.empty() ? "" : " (body starts '" + excerpt + "')") +
                                      ". Is the endpoint an S3 service (check --endpoint and any proxy)?");
}

}  // namespace duckblock::s3
