using Sluice.Gateway.Tests.Infrastructure;

namespace Sluice.Gateway.Tests.Performance;

/// <summary>
/// The gateway ships GC conserve-memory level 5 in its runtimeconfig (docs/configuration.md, "Runtime settings"), prints
/// the level it runs with at start, and the environment overrides it.
/// </summary>
public sealed class GcSettingsTests
{
    private const string Config = """{ "routes": [ { "path": "/echo", "proxy": { "target": "ws://127.0.0.1:9/echo" } } ] }""";

    [Fact]
    public async Task ConserveMemory_IsOnByDefault()
    {
        using var folder = new ConfigFolder();
        await using var gateway = await GatewayProcess.StartAsync(folder.Write(Config));
        await gateway.WaitForOutputAsync("GC: ");
        Assert.Contains("conserve memory 5 (DOTNET_GCConserveMemory=0 turns it off)", gateway.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ConserveMemory_CanBeTurnedOff()
    {
        using var folder = new ConfigFolder();
        await using var gateway = await GatewayProcess.StartAsync(folder.Write(Config), new Dictionary<string, string> { ["DOTNET_GCConserveMemory"] = "0" });
        await gateway.WaitForOutputAsync("GC: ");
        Assert.Contains("conserve memory 0", gateway.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("conserve memory 5", gateway.Output, StringComparison.Ordinal);
    }
}
