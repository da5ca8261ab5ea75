// SigV4 against AWS's published worked examples: the Signature Version 4
// test suite ("get-vanilla", "post-vanilla": credentials AKIDEXAMPLE, service
// "service", 20150830T123600Z) and the S3 API reference's header-signing
// examples (examplebucket, 20130524T000000Z). Each pins the canonical
// request, the string to sign and the signature as AWS prints them.
#include <gtest/gtest.h>

#include "sigv4.h"

namespace duckblock::s3 {
namespace {

const Credentials kSuite{"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "", "test"};
const Credentials kS3Doc{"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "", "test"};
constexpr const char* kS3Host = "examplebucket.s3.amazonaws.com";

SigningResult suite_vanilla(const std::string& method) {
  SigningInput in;
  in.method = method;
  in.canonical_uri = "/";
  in.headers = {{"Host", "example.amazonaws.com"}, {"X-Amz-Date", "20150830T123600Z"}};
  in.payload_hash = kEmptySha256;
  return sign_v4(in, kSuite, "us-east-1", "service", "20150830T123600Z");
}

TEST(S3SigV4, SuiteGetVanilla) {
  auto r = suite_vanilla("GET");
  EXPECT_EQ(r.canonical_request,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(r.string_to_sign,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
            "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63");
  EXPECT_EQ(r.signature, "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
  EXPECT_EQ(r.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
            "SignedHeaders=host;x-amz-date, "
            "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
}

TEST(S3SigV4, SuitePostVanilla) {
  auto r = suite_vanilla("POST");
  EXPECT_EQ(r.signature, "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b");
}

SigningResult s3_doc(const std::string& method, const std::string& uri, KeyValues query, KeyValues extra,
                     const std::string& payload_hash) {
  SigningInput in;
  in.method = method;
  in.canonical_uri = uri;
  in.query = std::move(query);
  in.headers = {{"Host", kS3Host}, {"x-amz-content-sha256", payload_hash}, {"x-amz-date", "20130524T000000Z"}};
  for (auto& h : extra) in.headers.push_back(h);
  in.payload_hash = payload_hash;
  return sign_v4(in, kS3Doc, "us-east-1", "s3", "20130524T000000Z");
}

TEST(S3SigV4, S3GetObjectWithRange) {
  auto r = s3_doc("GET", "/test.txt", {}, {{"Range", "bytes=0-9"}}, kEmptySha256);
  EXPECT_EQ(r.canonical_request,
            "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
            "x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
            "x-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n"
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(r.string_to_sign,
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
            "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
  EXPECT_EQ(r.signature, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

TEST(S3SigV4, S3PutObject) {
  std::string body = "Welcome to Amazon S3.";
  std::string hash = sha256_hex(body);
  EXPECT_EQ(hash, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
  auto r = s3_doc("PUT", "/" + uri_encode("test$file.text", false), {},
                  {{"Date", "Fri, 24 May 2013 00:00:00 GMT"}, {"x-amz-storage-class", "REDUCED_REDUNDANCY"}}, hash);
  EXPECT_EQ(r.canonical_request,
            "PUT\n/test%24file.text\n\ndate:Fri, 24 May 2013 00:00:00 GMT\nhost:examplebucket.s3.amazonaws.com\n"
            "x-amz-content-sha256:44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072\n"
            "x-amz-date:20130524T000000Z\nx-amz-storage-class:REDUCED_REDUNDANCY\n\n"
            "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class\n"
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
  EXPECT_EQ(r.string_to_sign,
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
            "9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d");
  EXPECT_EQ(r.signature, "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
}

TEST(S3SigV4, S3GetBucketLifecycle) {
  auto r = s3_doc("GET", "/", {{"lifecycle", ""}}, {}, kEmptySha256);
  EXPECT_EQ(sha256_hex(r.canonical_request), "9766c798316ff2757b517bc739a67f6213b4ab36dd5da2f94eaebf79c77395ca");
  EXPECT_EQ(r.signature, "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
}

TEST(S3SigV4, S3ListObjects) {
  // Given out of order: the canonical query sorts them.
  auto r = s3_doc("GET", "/", {{"prefix", "J"}, {"max-keys", "2"}}, {}, kEmptySha256);
  EXPECT_EQ(sha256_hex(r.canonical_request), "df57d21db20da04d7fa30298dd4488ba3a2b47ca3a489c74750e0f1e7df1b9b7");
  EXPECT_EQ(r.signature, "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
  EXPECT_EQ(r.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
            "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
            "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

TEST(S3SigV4, UriEncoding) {
  EXPECT_EQ(uri_encode("a b/c+d", false), "a%20b/c%2Bd");
  EXPECT_EQ(uri_encode("a/b", true), "a%2Fb");
  EXPECT_EQ(uri_encode("A-z_0.9~", true), "A-z_0.9~");
  EXPECT_EQ(uri_encode("*()!'$", true), "%2A%28%29%21%27%24");
  EXPECT_EQ(uri_encode("\xc3\xa9", true), "%C3%A9");
  EXPECT_EQ(canonical_query({{"b", "2"}, {"a", "x y"}, {"a", "+"}, {"c", ""}}), "a=%2B&a=x%20y&b=2&c=");
}

TEST(S3SigV4, HeaderValuesAreTrimmedAndNamesSorted) {
  SigningInput in;
  in.method = "GET";
  in.canonical_uri = "/";
  in.headers = {{"X-Amz-Date", "20150830T123600Z"}, {"My-Header", "  a   b  "}, {"Host", "h"}};
  in.payload_hash = kEmptySha256;
  auto r = sign_v4(in, kSuite, "us-east-1", "service", "20150830T123600Z");
  EXPECT_NE(r.canonical_request.find("host:h\nmy-header:a b\nx-amz-date:20150830T123600Z\n"), std::string::npos);
  EXPECT_EQ(r.signed_headers, "host;my-header;x-amz-date");
}

TEST(S3SigV4, TimeIsAnInput) {
  auto t = std::chrono::system_clock::from_time_t(1369353600);  // 2013-05-24 00:00:00 UTC
  EXPECT_EQ(amz_date(t), "20130524T000000Z");
}

}  // namespace
}  // namespace duckblock::s3
