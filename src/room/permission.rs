//! Who may do what in a consult. Enforced here, on the server; the client only hides buttons.

use signaling::Role;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send camera and microphone.
    Publish,
    ShareScreen,
    /// Send an image over the data channel (telepathology, radiology).
    ShareImage,
    Chat,
    /// Admit from, or turn away from, the lobby.
    Admit,
    Remove,
    MuteOthers,
    EndConsult,
}

pub fn may(role: Role, action: Action) -> bool {
    use Action::*;
    match role {
        // The operator runs the consult and often holds the clinic's scans to show.
        Role::Clinic => true,
        Role::Specialist => matches!(action, Publish | ShareScreen | ShareImage | Chat | Admit),
        Role::Patient => matches!(action, Publish | Chat),
        Role::Observer => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;

    #[test]
    fn each_role_may_do_what_the_consult_needs_and_nothing_else() {
        let all = [
            Publish,
            ShareScreen,
            ShareImage,
            Chat,
            Admit,
            Remove,
            MuteOthers,
            EndConsult,
        ];
        let table: &[(Role, &[Action])] = &[
            (Role::Clinic, &all),
            (
                Role::Specialist,
                &[Publish, ShareScreen, ShareImage, Chat, Admit],
            ),
            (Role::Patient, &[Publish, Chat]),
            (Role::Observer, &[]),
        ];
        for (role, allowed) in table {
            for action in all {
                assert_eq!(
                    may(*role, action),
                    allowed.contains(&action),
                    "{role:?} {action:?}"
                );
            }
        }
    }
}
