module onlinebank.local/pause

go 1.22
