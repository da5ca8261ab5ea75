// S3 URL parsing, credentials and addressing: no server needed.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>

#include "duckblock/error.h"
#include "http.h"
#include "xml.h"
#include "s3_store.h"
#include "test_util.h"

namespace duckblock::s3 {
namespace {

// Saves and clears the AWS variables for a test, restoring them after.
class CleanAwsEnv : public ::testing::Test {
 protected:
  static constexpr const char* kVars[] = {
      "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION",
      "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE",
      "AWS_MAX_ATTEMPTS", "DUCKBLOCK_S3_DOWNLOAD_STREAMS", "HOME"};
  void SetUp() override {
    for (const char* v : kVars) {
      const char* cur = std::getenv(v);
      saved_.emplace_back(v, cur ? std::optional<std::string>(cur) : std::nullopt);
      ::unsetenv(v);
    }
    ::setenv("HOME", dir_.path().c_str(), 1);  // no ~/.aws of the machine's user
  }
  void TearDown() override {
    for (auto& [k, v] : saved_) {
      if (v) ::setenv(k.c_str(), v->c_str(), 1);
      else ::unsetenv(k.c_str());
    }
  }
  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
  }
  test::TempDir dir_;
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

ErrorKind kind_of(const std::function<void()>& f, std::string* message = nullptr) {
  try {
    f();
  } catch (const Error& e) {
    if (message) *message = e.what();
    return e.kind();
  }
  ADD_FAILURE() << "no error";
  return ErrorKind::kUnsupported;
}

using S3ConfigEnv = CleanAwsEnv;

TEST_F(S3ConfigEnv, ParsesUrlsAndNormalisesThePrefix) {
  ::setenv("AWS_ACCESS_KEY_ID", "AKID", 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", "secret", 1);
  auto c = s3_config_from_url("s3://my-bucket/backups/db", {});
  EXPECT_EQ(c.bucket, "my-bucket");
  EXPECT_EQ(c.prefix, "backups/db/");
  EXPECT_EQ(c.url, "s3://my-bucket/backups/db/");
  EXPECT_EQ(c.region, "us-east-1");
  EXPECT_EQ(c.endpoint, "https://s3.us-east-1.amazonaws.com");
  EXPECT_FALSE(c.path_style);
  EXPECT_TRUE(c.verify_tls);
  EXPECT_EQ(s3_config_from_url("s3://my-bucket", {}).prefix, "");
  EXPECT_EQ(s3_config_from_url("s3://my-bucket/", {}).url, "s3://my-bucket/");
}

TEST_F(S3ConfigEnv, MaxAttemptsFromTheEnvironment) {
  ::setenv("AWS_ACCESS_KEY_ID", "AKID", 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", "secret", 1);
  EXPECT_EQ(s3_config_from_url("s3://my-bucket/", {}).max_attempts, 6);
  ::setenv("AWS_MAX_ATTEMPTS", "1000000", 1);
  EXPECT_EQ(s3_config_from_url("s3://my-bucket/", {}).max_attempts, 1000000);
  for (const char* bad : {"0", "-1", "three", "1e3", "99999999999"}) {
    ::setenv("AWS_MAX_ATTEMPTS", bad, 1);
    std::string message;
    EXPECT_EQ(kind_of([] { s3_config_from_url("s3://my-bucket/", {}); }, &message), ErrorKind::kInvalidArgument) << bad;
    EXPECT_NE(message.find("AWS_MAX_ATTEMPTS"), std::string::npos) << message;
  }
}

// One stream for a server on this machine, four elsewhere; the variable
// overrides both.
TEST_F(S3ConfigEnv, DownloadStreamsFromTheEnvironment) {
  ::setenv("AWS_ACCESS_KEY_ID", "AKID", 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", "secret", 1);
  StoreOptions local;
  local.endpoint = "http://127.0.0.1:9000";
  EXPECT_EQ(s3_config_from_url("s3://my-bucket/", {}).download_concurrency, 4);
  EXPECT_EQ(s3_config_from_url("s3://my-bucket/", local).download_concurrency, 1);
  ::setenv("DUCKBLOCK_S3_DOWNLOAD_STREAMS", "8", 1);
  EXPECT_EQ(s3_config_from_url("s3://my-bucket/", {}).download_concurrency, 8);
  EXPECT_EQ(s3_config_from_url("s3://my-bucket/", local).download_concurrency, 8);
  for (const char* bad : {"0", "33", "-1", "four", "100"}) {
    ::setenv("DUCKBLOCK_S3_DOWNLOAD_STREAMS", bad, 1);
    std::string message;
    EXPECT_EQ(kind_of([&] { s3_config_from_url("s3://my-bucket/", local); }, &message), ErrorKind::kInvalidArgument)
        << bad;
    EXPECT_NE(message.find("DUCKBLOCK_S3_DOWNLOAD_STREAMS"), std::string::npos) << message;
  }
}

TEST_F(S3ConfigEnv, RejectsBadUrlsAsInvalidArgument) {
  ::setenv("AWS_ACCESS_KEY_ID", "AKID", 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", "secret", 1);
  for (const char* bad : {"s3://", "s3:///prefix", "s3://Upper/x", "s3://ab/x", "s3://b_c/x", "s3://bucket/a?x=1",
                          "s3://bucket//x", "s3://-bucket/"}) {
    std::string msg;
    EXPECT_EQ(kind_of([&] { s3_config_from_url(bad, {}); }, &msg), ErrorKind::kInvalidArgument) << bad;
    EXPECT_NE(msg.find("s3://bucket/prefix/"), std::string::npos) << msg;
  }
  StoreOptions o;
  o.endpoint = "localhost:9000";
  EXPECT_EQ(kind_of([&] { s3_config_from_url("s3://bucket/", o); }), ErrorKind::kInvalidArgument);
  EXPECT_EQ(kind_of([&] { open_store("s3://", {}); }), ErrorKind::kInvalidArgument);
}

// "." and ".." segments are resolved away by servers and proxies that
// normalise paths (s3://bucket/../other/ would write into bucket "other").
TEST_F(S3ConfigEnv, RejectsDotSegmentsAndControlBytesInThePrefix) {
  ::setenv("AWS_ACCESS_KEY_ID", "AKID", 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", "secret", 1);
  for (const char* bad : {"s3://bucket/../other/", "s3://bucket/a/./b/", "s3://bucket/a/..", "s3://bucket/.",
                          "s3://bucket/a/../../x", "s3://bucket/a\nb/", "s3://bucket/a\rb"}) {
    std::string msg;
    EXPECT_EQ(kind_of([&] { s3_config_from_url(bad, {}); }, &msg), ErrorKind::kInvalidArgument) << bad;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
  // Dots inside a segment are ordinary characters.
  EXPECT_EQ(s3_config_from_url("s3://bucket/a.b/..c/.d/", {}).prefix, "a.b/..c/.d/");
}

// A CR/LF in a credential would inject a request header. Refused before any
// request, with a message that names the setting but never shows the value.
TEST_F(S3ConfigEnv, ControlBytesInCredentialsAreRefusedWithoutShowingThem) {
  const std::string secretish = "SeCrEtVaLuE";
  struct Case {
    const char* var;
    std::string value;
  };
  for (const auto& c : std::vector<Case>{{"AWS_SESSION_TOKEN", secretish + "\r\nX-Injected: 1"},
                                         {"AWS_ACCESS_KEY_ID", secretish + "\n"},
                                         {"AWS_SECRET_ACCESS_KEY", secretish + "\x01" "x"},
                                         {"AWS_SECRET_ACCESS_KEY", secretish + "\x7f"}}) {
    ::setenv("AWS_ACCESS_KEY_ID", "AKID", 1);
    ::setenv("AWS_SECRET_ACCESS_KEY", "secret", 1);
    ::unsetenv("AWS_SESSION_TOKEN");
    ::setenv(c.var, c.value.c_str(), 1);
    std::string msg;
    EXPECT_EQ(kind_of([&] { s3_config_from_url("s3://bucket/x/", {}); }, &msg), ErrorKind::kInvalidArgument) << c.var;
    EXPECT_NE(msg.find(c.var), std::string::npos) << msg;
    EXPECT_EQ(msg.find(secretish), std::string::npos) << "the secret was printed: " << msg;
    EXPECT_EQ(msg.find("Injected"), std::string::npos) << msg;
  }
  // The same from a profile in the shared credentials file (a CR inside a
  // line survives the line split; a trailing one is trimmed like spaces).
  ::unsetenv("AWS_ACCESS_KEY_ID");
  ::unsetenv("AWS_SECRET_ACCESS_KEY");
  ::unsetenv("AWS_SESSION_TOKEN");
  write("creds", "[p]\naws_access_key_id = AKID\naws_secret_access_key = " + secretish +
                     "\raws_session_token = x\n");
  ::setenv("AWS_SHARED_CREDENTIALS_FILE", (dir_ / "creds").c_str(), 1);
  StoreOptions o;
  o.profile = "p";
  std::string msg;
  EXPECT_EQ(kind_of([&] { s3_config_from_url("s3://bucket/x/", o); }, &msg), ErrorKind::kInvalidArgument);
  EXPECT_NE(msg.find("aws_secret_access_key"), std::string::npos) << msg;
  EXPECT_EQ(msg.find(secretish), std::string::npos) << msg;
  write("creds2", "[p]\r\naws_access_key_id = AKID\r\naws_secret_access_key = " + secretish + "\r\n");
  ::setenv("AWS_SHARED_CREDENTIALS_FILE", (dir_ / "creds2").c_str(), 1);
  EXPECT_EQ(s3_config_from_url("s3://bucket/x/", o).credentials.secret_access_key, secretish);  // CRLF files still work
  // Region and endpoint become part of the host name and the signature.
  ::setenv("AWS_ACCESS_KEY_ID", "AKID", 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", "secret", 1);
  for (const char* region : {"eu-west-1\r\nX: y", "eu west", "a/b"}) {
    StoreOptions r;
    r.region = region;
    EXPECT_EQ(kind_of([&] { s3_config_from_url("s3://bucket/x/", r); }), ErrorKind::kInvalidArgument) << region;
  }
  for (const char* endpoint : {"http://user@127.0.0.1:9000", "http://host\r\n:1", "http://a b"}) {
    StoreOptions e;
    e.endpoint = endpoint;
    EXPECT_EQ(kind_of([&] { s3_config_from_url("s3://bucket/x/", e); }), ErrorKind::kInvalidArgument) << endpoint;
  }
}

TEST_F(S3ConfigEnv, MissingCredentialsSayWhich) {
  std::string msg;
  EXPECT_EQ(kind_of([&] { s3_config_from_url("s3://bucket/", {}); }, &msg), ErrorKind::kAuth);
  EXPECT_NE(msg.find("AWS_ACCESS_KEY_ID"), std::string::npos) << msg;
  EXPECT_NE(msg.find(".aws/credentials"), std::string::npos) << msg;

  ::setenv("AWS_ACCESS_KEY_ID", "AKID", 1);
  EXPECT_EQ(kind_of([&] { s3_config_from_url("s3://bucket/", {}); }, &msg), ErrorKind::kAuth);
  EXPECT_NE(msg.find("AWS_SECRET_ACCESS_KEY is not"), std::string::npos) << msg;

  ::unsetenv("AWS_ACCESS_KEY_ID");
  ::setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value", 1);
  EXPECT_EQ(kind_of([&] { s3_config_from_url("s3://bucket/", {}); }, &msg), ErrorKind::kAuth);
  EXPECT_NE(msg.find("AWS_ACCESS_KEY_ID is not"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("very-secret-value"), std::string::npos);
}

TEST_F(S3ConfigEnv, EnvironmentVariables) {
  ::setenv("AWS_ACCESS_KEY_ID", "AKID", 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", "secret", 1);
  ::setenv("AWS_SESSION_TOKEN", "token", 1);
  ::setenv("AWS_DEFAULT_REGION", "eu-west-3", 1);
  ::setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000/", 1);
  auto c = s3_config_from_url("s3://bucket/p/", {});
  EXPECT_EQ(c.credentials.access_key_id, "AKID");
  EXPECT_EQ(c.credentials.secret_access_key, "secret");
  EXPECT_EQ(c.credentials.session_token, "token");
  EXPECT_EQ(c.region, "eu-west-3");
  EXPECT_EQ(c.endpoint, "http://127.0.0.1:9000");
  EXPECT_TRUE(c.path_style);  // custom endpoints default to path style
  ::setenv("AWS_REGION", "ap-south-1", 1);
  EXPECT_EQ(s3_config_from_url("s3://bucket/p/", {}).region, "ap-south-1");
  // Options win over the environment.
  StoreOptions o;
  o.region = "us-west-2";
  o.endpoint = "https://minio.example:9000";
  o.path_style = false;
  o.verify_tls = false;
  c = s3_config_from_url("s3://bucket/p/", o);
  EXPECT_EQ(c.region, "us-west-2");
  EXPECT_EQ(c.endpoint, "https://minio.example:9000");
  EXPECT_FALSE(c.path_style);
  EXPECT_FALSE(c.verify_tls);
}

// Credentials the program gives (the extension: a DuckDB secret) come
// before an explicit profile, the environment and the credentials file.
TEST_F(S3ConfigEnv, GivenCredentialsComeFirst) {
  write("creds", "[work]\naws_access_key_id=WORKKEY\naws_secret_access_key=worksecret\n");
  ::setenv("AWS_SHARED_CREDENTIALS_FILE", (dir_ / "creds").c_str(), 1);
  ::setenv("AWS_ACCESS_KEY_ID", "ENVKEY", 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
  StoreOptions o;
  o.profile = "work";
  o.credentials = StoreOptions::Credentials{"GIVENKEY", "givensecret", "giventoken", "the test"};
  auto c = s3_config_from_url("s3://bucket/", o);
  EXPECT_EQ(c.credentials.access_key_id, "GIVENKEY");
  EXPECT_EQ(c.credentials.secret_access_key, "givensecret");
  EXPECT_EQ(c.credentials.session_token, "giventoken");
  EXPECT_EQ(c.credentials.source, "the test");
}

TEST_F(S3ConfigEnv, SharedCredentialsFileAndProfiles) {
  write("creds",
        "[default]\naws_access_key_id = DEFAULTKEY\naws_secret_access_key = defaultsecret\n\n"
        "# a comment\n[work]\naws_access_key_id=WORKKEY\naws_secret_access_key=worksecret\n"
        "aws_session_token = worktoken\n");
  write("config", "[profile work]\nregion = eu-central-1\n");
  ::setenv("AWS_SHARED_CREDENTIALS_FILE", (dir_ / "creds").c_str(), 1);
  ::setenv("AWS_CONFIG_FILE", (dir_ / "config").c_str(), 1);
  auto c = s3_config_from_url("s3://bucket/", {});
  EXPECT_EQ(c.credentials.access_key_id, "DEFAULTKEY");
  EXPECT_EQ(c.credentials.secret_access_key, "defaultsecret");

  ::setenv("AWS_PROFILE", "work", 1);
  c = s3_config_from_url("s3://bucket/", {});
  EXPECT_EQ(c.credentials.access_key_id, "WORKKEY");
  EXPECT_EQ(c.credentials.session_token, "worktoken");
  EXPECT_EQ(c.region, "eu-central-1");
  ::unsetenv("AWS_PROFILE");

  StoreOptions o;
  o.profile = "work";
  ::setenv("AWS_ACCESS_KEY_ID", "ENVKEY", 1);  // an explicit profile option beats the environment
  ::setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
  EXPECT_EQ(s3_config_from_url("s3://bucket/", o).credentials.access_key_id, "WORKKEY");
  EXPECT_EQ(s3_config_from_url("s3://bucket/", {}).credentials.access_key_id, "ENVKEY");

  o.profile = "nope";
  std::string msg;
  EXPECT_EQ(kind_of([&] { s3_config_from_url("s3://bucket/", o); }, &msg), ErrorKind::kAuth);
  EXPECT_NE(msg.find("profile 'nope' not found"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("secret"), std::string::npos) << msg;
}

TEST(S3Url, PathAndVirtualHostAddressing) {
  S3Config c;
  c.bucket = "my-bucket";
  c.endpoint = "http://127.0.0.1:9000";
  c.path_style = true;
  auto t = s3_target(c, "db/seg 1+2.hadbp");
  EXPECT_EQ(t.url, "http://127.0.0.1:9000/my-bucket/db/seg%201%2B2.hadbp");
  EXPECT_EQ(t.host, "127.0.0.1:9000");
  EXPECT_EQ(t.canonical_uri, "/my-bucket/db/seg%201%2B2.hadbp");
  // The bucket itself: no trailing slash (s3rver rejects one, and S3 does
  // not need it).
  EXPECT_EQ(s3_target(c, "").url, "http://127.0.0.1:9000/my-bucket");

  c.endpoint = "https://s3.eu-west-1.amazonaws.com";
  c.path_style = false;
  t = s3_target(c, "a/b");
  EXPECT_EQ(t.url, "https://my-bucket.s3.eu-west-1.amazonaws.com/a/b");
  EXPECT_EQ(t.host, "my-bucket.s3.eu-west-1.amazonaws.com");
  EXPECT_EQ(t.canonical_uri, "/a/b");
  EXPECT_EQ(s3_target(c, "").canonical_uri, "/");
}

TEST(S3Xml, ParsesS3DocumentsAndRefusesWhatIsNotOne) {
  auto doc = parse_xml(
      "  \n<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>b</Name>"
      "<Contents><Key>a&amp;b&#x3c;&#233;</Key><Size>12</Size></Contents><Contents><Key>c</Key></Contents>"
      "<IsTruncated>false</IsTruncated></ListBucketResult>");
  ASSERT_TRUE(doc);
  EXPECT_EQ(doc->name, "ListBucketResult");
  auto contents = doc->all("Contents");
  ASSERT_EQ(contents.size(), 2u);
  EXPECT_EQ(contents[0]->child_text("Key"), "a&b<\xc3\xa9");
  EXPECT_EQ(contents[0]->child_text("Size"), "12");
  EXPECT_EQ(contents[1]->child_text("Size"), std::nullopt);
  // A <Key> inside <Contents> is not the document's: no substring confusion.
  EXPECT_EQ(doc->child_text("Key"), std::nullopt);

  std::string why;
  EXPECT_FALSE(parse_xml("<html><body>It works!</p></html>", &why));
  EXPECT_NE(why.find("not well-formed"), std::string::npos) << why;
  EXPECT_FALSE(parse_xml("", &why));
  EXPECT_FALSE(parse_xml("<a>unterminated", &why));
  // No DOCTYPE: S3 never sends one, and entity definitions could expand.
  EXPECT_FALSE(parse_xml("<!DOCTYPE a [<!ENTITY x \"xxxxxxxx\">]><a>&x;</a>", &why));
  EXPECT_NE(why.find("DOCTYPE"), std::string::npos) << why;
  std::string deep;
  for (int i = 0; i < 100; ++i) deep += "<a>";
  for (int i = 0; i < 100; ++i) deep += "</a>";
  EXPECT_FALSE(parse_xml(deep, &why));

  try {
    parse_s3_answer("<html><body>hi</body></html>", "ListBucketResult", "LIST s3://b/p/", "http://host:1");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kRemote);
    EXPECT_NE(std::string(e.what()).find("LIST s3://b/p/: http://host:1 answered with an XML document with root <html>"),
              std::string::npos)
        << e.what();
  }
}

// The HTTP layer refuses to send any header with a control byte, whatever
// produced it: no request leaves (the endpoint is a closed port, so a sent
// request would fail as a transport error instead).
TEST(S3Http, HeadersWithControlBytesAreNeverSent) {
  HttpClient client(HttpOptions{});
  for (auto header : std::vector<std::pair<std::string, std::string>>{{"x-amz-security-token", "t\r\nX-Evil: 1"},
                                                                        {"x-amz-meta-a", std::string("a\0b", 3)},
                                                                        {"X-Evil\r\nA", "b"},
                                                                        {"a:b", "c"}}) {
    HttpRequest req;
    req.method = "GET";
    req.url = "http://127.0.0.1:1/bucket/key";
    req.headers = {header};
    try {
      client.perform(req);
      ADD_FAILURE() << "sent";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument) << e.what();
      EXPECT_EQ(std::string(e.what()).find("Evil"), std::string::npos) << e.what();
    } catch (const TransportError& e) {
      ADD_FAILURE() << "the request was sent: " << e.what();
    }
  }
}

}  // namespace
}  // namespace duckblock::s3
