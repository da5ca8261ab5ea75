// S3 URL parsing, credentials and addressing: no server needed.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>

#include "duckblock/error.h"
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
      "HOME"};
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

}  // namespace
}  // namespace duckblock::s3
