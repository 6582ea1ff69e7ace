using Sluice.Gateway.Tests.Infrastructure;

namespace Sluice.Gateway.Tests.Streaming;

/// <summary>A route's <c>stream</c> is checked like every key: each error names its JSON path.</summary>
public class StreamConfigTests
{
    [Fact]
    public async Task BadStreamValues_AreReportedAtTheirJsonPaths()
    {
        using var folder = new ConfigFolder();
        var path = folder.Write("""
        {
          "limits": { "maxMessageBytes": 65536 },
          "routes": [
            { "path": "/zero", "proxy": { "target": "ws://127.0.0.1:9/" }, "stream": { "aboveBytes": 0 } },
            { "path": "/inverted", "proxy": { "target": "ws://127.0.0.1:9/" }, "stream": { "aboveBytes": 32768, "maxBytes": 1024 } },
            { "path": "/above-limit", "proxy": { "target": "ws://127.0.0.1:9/" }, "stream": { "aboveBytes": 1048576 } },
            { "path": "/typo", "proxy": { "target": "ws://127.0.0.1:9/" }, "stream": { "aboveByte": 1024, "maxBytes": "big" } },
            { "path": "/fine", "proxy": { "target": "ws://127.0.0.1:9/" }, "stream": { "aboveBytes": 65536, "maxBytes": 1073741824 } },
            { "path": "/echo", "handler": { "type": "echo" }, "stream": {} }
          ]
        }
        """);

        var (exitCode, _, error) = await GatewayProcess.RunAsync("--check", "--config", path);

        Assert.Equal(1, exitCode);
        Assert.Contains("routes[0].stream.aboveBytes: must be between 1 and 1073741824", error, StringComparison.Ordinal);
        Assert.Contains("routes[1].stream.maxBytes: must be at least aboveBytes (32768)", error, StringComparison.Ordinal);
        Assert.Contains("routes[2].stream.aboveBytes: must be at most limits.maxMessageBytes (65536)", error, StringComparison.Ordinal);
        Assert.Contains("routes[3].stream.aboveByte:", error, StringComparison.Ordinal);
        Assert.Contains("routes[3].stream.maxBytes: must be a number", error, StringComparison.Ordinal);
        Assert.DoesNotContain("routes[4]", error, StringComparison.Ordinal);
        Assert.Contains("routes[5].stream: applies to proxy routes only: a handler receives whole messages", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AStreamWithDefaults_IsAccepted()
    {
        using var folder = new ConfigFolder();
        var path = folder.Write("""{ "routes": [ { "path": "/s", "proxy": { "target": "ws://127.0.0.1:9/" }, "stream": {} } ] }""");

        var (exitCode, output, error) = await GatewayProcess.RunAsync("--check", "--config", path);

        Assert.True(exitCode == 0, error);
        Assert.Contains("/s", output, StringComparison.Ordinal);
    }
}
