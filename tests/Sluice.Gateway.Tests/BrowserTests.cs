using System.Diagnostics;
using Sluice.Gateway.Tests.Infrastructure;
using Sluice.Tests.Infrastructure;

namespace Sluice.Gateway.Tests;

/// <summary>
/// The demo page and the dashboard in Debian's headless Chromium, driven by tests/interop/browser.mjs. The screenshots
/// land in artifacts/screenshots (the README shows one).
/// </summary>
public class BrowserTests
{
    private static readonly string Screenshots = Path.GetFullPath(Path.Combine(ExternalPeer.InteropDirectory, "..", "..", "artifacts", "screenshots"));

    [Fact]
    public async Task DemoPage_JoinsARoom_Chats_AndShowsWhatEachPolicyDid()
    {
        await using var gateway = await GatewayProcess.StartAsync(configPath: null);

        var result = await RunAsync("demo", gateway.Http("/").ToString().TrimEnd('/'), Screenshots);

        Assert.Equal("OK demo", result);
    }

    [Fact]
    public async Task Dashboard_AsksForTheKey_ShowsLiveTraffic_AndItsCloseButtonCloses1008()
    {
        using var folder = new ConfigFolder();
        var path = folder.Write("""{ "admin": { "apiKey": "env:SLUICE_BROWSER_ADMIN_KEY" }, "routes": [ { "path": "/echo", "handler": { "type": "echo" } } ] }""");
        await using var gateway = await GatewayProcess.StartAsync(path, new Dictionary<string, string> { ["SLUICE_BROWSER_ADMIN_KEY"] = "browser-key-0123456789" });

        var result = await RunAsync("dashboard", gateway.Http("/").ToString().TrimEnd('/'), "browser-key-0123456789", Screenshots);

        Assert.Equal("OK dashboard closed 1008", result);
    }

    [Fact]
    public async Task Dashboard_SignIn_Works_FromTheAdminPath_WithAndWithoutTrailingSlash()
    {
        using var folder = new ConfigFolder();
        var path = folder.Write("""{ "admin": { "apiKey": "env:SLUICE_BROWSER_ADMIN_KEY" }, "routes": [ { "path": "/echo", "handler": { "type": "echo" } } ] }""");
        await using var gateway = await GatewayProcess.StartAsync(path, new Dictionary<string, string> { ["SLUICE_BROWSER_ADMIN_KEY"] = "browser-key-0123456789" });

        var result = await RunAsync("login", gateway.Http("/").ToString().TrimEnd('/'), "browser-key-0123456789", "/_sluice", "/_sluice/");

        Assert.Equal("OK login /_sluice /_sluice/", result);
    }

    private static async Task<string> RunAsync(params string[] arguments)
    {
        var info = new ProcessStartInfo("node") { WorkingDirectory = ExternalPeer.InteropDirectory, RedirectStandardOutput = true, RedirectStandardError = true };
        info.ArgumentList.Add("browser.mjs");
        foreach (var argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        using var process = Process.Start(info)!;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        var output = process.StandardOutput.ReadToEndAsync(timeout.Token);
        var error = process.StandardError.ReadToEndAsync(timeout.Token);
        await process.WaitForExitAsync(timeout.Token);
        var last = (await output).Trim().Split('\n').Last();
        return process.ExitCode == 0 ? last : $"exit {process.ExitCode}: {last} {await error}";
    }
}
