namespace Sluice.Policies;

/// <summary>Adds policies to a Sluice pipeline.</summary>
public static class PolicyPipelineExtensions
{
    /// <summary>
    /// Adds a message policy, named in logs and metrics by its <see cref="MessagePolicy.Name"/>, seeing the control
    /// frames of its <see cref="MessagePolicy.ControlFrames"/>, and limited to the
    /// messages that match <paramref name="when"/> if given. Place it in one direction with
    /// <see cref="InterceptorRegistration.InboundOnly"/> or <see cref="InterceptorRegistration.OutboundOnly"/>.
    /// </summary>
    public static InterceptorRegistration UsePolicy(this WebSocketPipelineBuilder builder, IMessageInterceptor policy, PolicyCondition? when = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(policy);
        var registration = builder.Use(policy);
        if (policy is MessagePolicy named)
        {
            registration.WithName(named.Name);
            if (named.ControlFrames != ControlFrames.None)
            {
                registration.WithControlFrames(named.ControlFrames);
            }

            if (named.HandlesFragments)
            {
                registration.HandlesFragments();
            }
        }

        if (when is not null)
        {
            PolicyValidation.ThrowIfInvalid(when, "when");
            registration.When(when.ToPredicate());
        }

        return registration;
    }

    /// <summary>Adds an upgrade policy: it runs on the HTTP upgrade request, and once the connection exists if it needs to.</summary>
    public static WebSocketPipelineBuilder UseUpgradePolicy(this WebSocketPipelineBuilder builder, IUpgradePolicy policy)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(policy);
        builder.UseUpgrade(policy.EvaluateAsync);
        builder.OnConnected(policy.OnConnectedAsync);
        return builder;
    }
}
