using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Sluice.Tests.Infrastructure;

namespace Sluice.Tests.Hosting;

/// <summary>An app hosting Sluice gets Kestrel's connection limits from the open-file budget, unless it set its own.</summary>
public class ConnectionBudgetTests
{
    [Fact]
    public async Task AddSluice_CapsKestrelsConnectionsFromTheBudget()
    {
        await using var server = await TestServer.StartAsync(_ => { });

        var budget = server.Services.GetRequiredService<ConnectionBudget>();
        var limits = server.Services.GetRequiredService<IOptions<KestrelServerOptions>>().Value.Limits;
        Assert.Equal(budget.MaxPending, limits.MaxConcurrentConnections);
        Assert.Equal(budget.MaxUpgraded, limits.MaxConcurrentUpgradedConnections);
        Assert.Equal(budget.MaxConnections, server.Services.GetRequiredService<IWebSocketConnectionRegistry>().MaxConnections);
    }

    [Fact]
    public async Task LimitsTheAppSet_AreKept()
    {
        await using var server = await TestServer.StartAsync(_ => { }, configureBuilder: b => b.WebHost.ConfigureKestrel(o => o.Limits.MaxConcurrentConnections = 5));

        var limits = server.Services.GetRequiredService<IOptions<KestrelServerOptions>>().Value.Limits;
        Assert.Equal(5, limits.MaxConcurrentConnections);
        Assert.Equal(server.Services.GetRequiredService<ConnectionBudget>().MaxUpgraded, limits.MaxConcurrentUpgradedConnections);
    }

    [Fact]
    public async Task MaxConnectionsBeyondTheOpenFileLimit_IsLoweredWithAWarning()
    {
        await using var server = await TestServer.StartAsync(_ => { }, s => s.Configure<SluiceOptions>(o => o.MaxConnections = 50_000_000));

        var registry = server.Services.GetRequiredService<IWebSocketConnectionRegistry>();
        Assert.InRange(registry.MaxConnections, 1, 1_000_000);
        var warning = Assert.Single(server.Logs.Entries, e => e.EventId.Id == 110);
        Assert.Contains("50000000", warning.Message, StringComparison.Ordinal);
    }
}
