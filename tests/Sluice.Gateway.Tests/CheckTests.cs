using Sluice.Gateway.Tests.Infrastructure;

namespace Sluice.Gateway.Tests;

/// <summary><c>--check</c>: the summary on stdout and exit 0, or every error with its JSON path on stderr and exit 1.</summary>
public class CheckTests
{
    public static TheoryData<string> BrokenFiles() =>
        [.. Directory.EnumerateFiles(Path.Combine(AppContext.BaseDirectory, "Check"), "*.json").Select(f => Path.GetFileNameWithoutExtension(f)!).Order()];

    [Theory]
    [MemberData(nameof(BrokenFiles))]
    public async Task Check_OfABrokenFile_PrintsEveryErrorWithItsPath_AndExits1(string name)
    {
        var directory = Path.Combine(AppContext.BaseDirectory, "Check");
        var file = Path.Combine(directory, name + ".json");

        var (exitCode, output, error) = await GatewayProcess.RunAsync("--check", "--config", file);

        var expected = File.ReadAllText(Path.Combine(directory, name + ".expected.txt")).Replace("{DIR}", directory, StringComparison.Ordinal).Trim();
        Assert.Equal(1, exitCode);
        Assert.Equal(string.Empty, output);
        Assert.Equal(expected.Split('\n'), error.Split('\n'));
    }

    [Fact]
    public async Task Check_OfAValidFile_PrintsASummaryOnStdout_AndExits0()
    {
        using var folder = new ConfigFolder();
        var path = folder.Write("""
            {
              "routes": [
                { "path": "/echo", "handler": { "type": "echo" }, "inbound": ["max-64k"] },
                { "path": "/topics", "handler": { "type": "pubsub" } },
              ],
              "policies": { "max-64k": { "type": "size-limit", "options": { "maxBytes": 65536 } } },
            }
            """);

        var (exitCode, output, error) = await GatewayProcess.RunAsync("--check", "--config", path);

        Assert.Equal((0, $"{path}: valid: 2 routes, 1 policy", string.Empty), (exitCode, output, error));
    }

    [Fact]
    public async Task InvalidFileAtStart_Exits1_WithTheSameErrors_AndStartsNothing()
    {
        var file = Path.Combine(AppContext.BaseDirectory, "Check", "unknown-policy.json");
        var port = GatewayProcess.FreePort();

        var (exitCode, output, error) = await GatewayProcess.RunAsync("--config", file, "--urls", $"http://127.0.0.1:{port}");

        Assert.Equal(1, exitCode);
        Assert.Equal("routes[2].inbound[0]: unknown policy 'redcat'; did you mean 'redact'?", error);
        Assert.DoesNotContain("listening", output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--frobnicate")]
    [InlineData("--check")]
    [InlineData("--config")]
    [InlineData("--urls", "ws://127.0.0.1:8443")]
    [InlineData("--urls", "not a url")]
    public async Task BadArguments_Exit2_WithUsage(params string[] arguments)
    {
        var (exitCode, _, error) = await GatewayProcess.RunAsync(arguments);

        Assert.Equal(2, exitCode);
        Assert.Contains("Usage: sluice", error, StringComparison.Ordinal);
    }
}
