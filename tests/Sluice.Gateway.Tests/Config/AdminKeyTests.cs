using Microsoft.Extensions.DependencyInjection;
using Sluice.Gateway.Configuration;

namespace Sluice.Gateway.Tests.Config;

/// <summary><c>admin.apiKey</c> read from the environment: judged by its value, never by how the value reads.</summary>
public class AdminKeyTests
{
    private static readonly IServiceProvider s_services = new ServiceCollection().AddLogging().BuildServiceProvider();

    [Fact]
    public void AnUnsetVariable_IsReportedOnce() =>
        Assert.Equal(
            ["admin.apiKey: environment variable SLUICE_ADMINKEYTESTS_UNSET is not set"],
            Errors("env:SLUICE_ADMINKEYTESTS_UNSET"));

    [Fact]
    public void AShortKeyFromTheEnvironment_IsTooShort_EvenIfItReadsLikeAReference()
    {
        // The variable holds a 9-character key that happens to start with "env:".
        Environment.SetEnvironmentVariable("SLUICE_ADMINKEYTESTS_SHORT", "env:short");
        try
        {
            Assert.Equal(["admin.apiKey: must be at least 16 characters"], Errors("env:SLUICE_ADMINKEYTESTS_SHORT"));
        }
        finally
        {
            Environment.SetEnvironmentVariable("SLUICE_ADMINKEYTESTS_SHORT", null);
        }
    }

    private static List<string> Errors(string apiKey)
    {
        var text = $$"""
            {
              "listen": ["http://127.0.0.1:8080"],
              "admin": { "apiKey": "{{apiKey}}" },
              "routes": [ { "path": "/echo", "handler": { "type": "echo" } } ]
            }
            """;
        var result = ConfigLoader.Parse(text, Path.GetTempPath(), s_services);
        if (result.Config is { } config)
        {
            ConfigLoader.DisposeNew(config.Policies.Values, null);
        }

        return [.. result.Errors.Select(e => e.ToString())];
    }
}
